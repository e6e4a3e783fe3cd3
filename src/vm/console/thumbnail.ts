// A screenshot scaled down for a control panel's list of VMs: qemu writes its
// screendump as PPM (raw RGB), which is averaged down to the asked width, the
// height following so the aspect is kept, and encoded as PNG. A box filter:
// each thumbnail pixel is the mean of the screen pixels it covers, so text
// turns into grey rather than into noise.
import { crc32, deflateSync } from "node:zlib";

export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes, rows top to bottom. */
  rgb: Buffer;
}

/** Binary PPM (P6) with 8-bit samples, as qemu's screendump writes it. */
export function parsePpm(ppm: Buffer): RgbImage {
  const fields: string[] = [];
  let pos = 0;
  // Magic, width, height, maxval: whitespace-separated, comments from '#' to the line's end.
  while (fields.length < 4 && pos < ppm.length) {
    const c = ppm[pos]!;
    if (c === 0x23) {
      while (pos < ppm.length && ppm[pos] !== 0x0a) pos++;
    } else if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      pos++;
    } else {
      const start = pos;
      while (pos < ppm.length && ![0x20, 0x0a, 0x0d, 0x09].includes(ppm[pos]!)) pos++;
      fields.push(ppm.toString("latin1", start, pos));
    }
  }
  pos++; // the single whitespace byte before the samples
  const [magic, w, h, max] = fields;
  const width = Number(w);
  const height = Number(h);
  if (magic !== "P6" || max !== "255" || !(width > 0) || !(height > 0)) throw new Error(`not an 8-bit binary PPM (${fields.join(" ")})`);
  const rgb = ppm.subarray(pos, pos + width * height * 3);
  if (rgb.length !== width * height * 3) throw new Error(`PPM of ${width}x${height} has ${rgb.length} bytes of samples`);
  return { width, height, rgb };
}

/** At most `width` wide, the height in proportion (at least 1); never larger than the image. */
export function scaleToWidth(img: RgbImage, width: number): RgbImage {
  if (width >= img.width) return img;
  const height = Math.max(1, Math.round((img.height * width) / img.width));
  const rgb = Buffer.alloc(width * height * 3);
  for (let dy = 0; dy < height; dy++) {
    const y0 = Math.floor((dy * img.height) / height);
    const y1 = Math.max(y0 + 1, Math.floor(((dy + 1) * img.height) / height));
    for (let dx = 0; dx < width; dx++) {
      const x0 = Math.floor((dx * img.width) / width);
      const x1 = Math.max(x0 + 1, Math.floor(((dx + 1) * img.width) / width));
      let r = 0;
      let g = 0;
      let b = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0, i = (y * img.width + x0) * 3; x < x1; x++, i += 3) {
          r += img.rgb[i]!;
          g += img.rgb[i + 1]!;
          b += img.rgb[i + 2]!;
        }
      }
      const n = (y1 - y0) * (x1 - x0);
      const o = (dy * width + dx) * 3;
      rgb[o] = Math.round(r / n);
      rgb[o + 1] = Math.round(g / n);
      rgb[o + 2] = Math.round(b / n);
    }
  }
  return { width, height, rgb };
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** 8-bit RGB PNG, every row unfiltered (filter byte 0): small enough for a thumbnail, simple to check. */
export function encodePng(img: RgbImage): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(img.width, 0);
  header.writeUInt32BE(img.height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: RGB
  const stride = img.width * 3;
  const raw = Buffer.alloc(img.height * (stride + 1));
  for (let y = 0; y < img.height; y++) img.rgb.copy(raw, y * (stride + 1) + 1, y * stride, (y + 1) * stride);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

export function thumbnailPng(ppm: Buffer, width: number): Buffer {
  return encodePng(scaleToWidth(parsePpm(ppm), width));
}
