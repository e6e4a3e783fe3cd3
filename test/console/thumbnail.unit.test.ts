// Thumbnails from qemu's PPM screendumps: the aspect kept, each pixel the mean of
// those it covers, never scaled up, and a PNG that a decoder reads back.
import t from "tap";
import { encodePng, parsePpm, scaleToWidth, thumbnailPng } from "../../src/vm/console/thumbnail.js";
import { decodePng } from "../helpers/png.js";

function ppm(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
  const rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) rgb.set(pixel(x, y), (y * width + x) * 3);
  return Buffer.concat([Buffer.from(`P6\n# from qemu\n${width} ${height}\n255\n`, "latin1"), rgb]);
}

t.test("scaled to the width asked, the height in proportion", async (t) => {
  for (const [w, h, want, wantH] of [
    [720, 400, 320, 178],
    [1024, 768, 320, 240],
    [640, 480, 100, 75],
    [800, 2, 100, 1],
  ] as const) {
    const png = decodePng(thumbnailPng(ppm(w, h, () => [10, 20, 30]), want));
    t.same([png.width, png.height], [want, wantH], `${w}x${h} at width ${want}`);
    t.same([...png.pixels.subarray(0, 3)], [10, 20, 30], "a flat colour stays itself");
  }
  const small = decodePng(thumbnailPng(ppm(64, 48, () => [1, 2, 3]), 320));
  t.same([small.width, small.height], [64, 48], "never scaled up");
});

t.test("a thumbnail pixel is the mean of the pixels it covers", async (t) => {
  // Alternate black and white columns: every 2-to-1 pixel is their mean.
  const img = scaleToWidth(parsePpm(ppm(8, 4, (x) => (x % 2 ? [255, 255, 255] : [0, 0, 0]))), 4);
  t.same([img.width, img.height], [4, 2]);
  t.ok([...img.rgb].every((v) => v === 128), "grey, not black or white");
});

t.test("what is not an 8-bit P6 is refused", async (t) => {
  t.throws(() => parsePpm(Buffer.from("P5\n2 2\n255\n\0\0\0\0")), /not an 8-bit binary PPM/);
  t.throws(() => parsePpm(Buffer.from("P6\n2 2\n255\n\0\0\0")), /has 3 bytes/);
  t.equal(decodePng(encodePng({ width: 1, height: 1, rgb: Buffer.from([9, 8, 7]) })).pixels.toString("hex"), "090807");
});
