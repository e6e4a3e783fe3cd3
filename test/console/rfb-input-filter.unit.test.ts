// The read-only VNC filter on the client's half of the RFB stream: the handshake
// and the picture requests pass byte for byte, input is dropped, whatever the
// chunking; what cannot be framed ends the session rather than pass.
import t from "tap";
import { RfbReadOnlyFilter } from "../../src/vm/console/rfb-input-filter.js";

const handshake = Buffer.concat([Buffer.from("RFB 003.008\n"), Buffer.from([1]), Buffer.from([1])]);
const setPixelFormat = Buffer.concat([Buffer.from([0, 0, 0, 0]), Buffer.alloc(16, 7)]);
const setEncodings = Buffer.from([2, 0, 0, 2, 0, 0, 0, 7, 0xff, 0xff, 0xff, 0x21]);
const updateRequest = Buffer.from([3, 1, 0, 0, 0, 0, 2, 128, 1, 224]);
const continuous = Buffer.from([150, 1, 0, 0, 0, 0, 2, 128, 1, 224]);
const fence = Buffer.from([248, 0, 0, 0, 0, 0, 0, 3, 2, 9, 9]);
const key = Buffer.from([4, 1, 0, 0, 0, 0, 0xff, 0xff]);
const pointer = Buffer.from([5, 1, 0, 10, 0, 10]);
const pointerExtended = Buffer.from([5, 0x81, 0, 10, 0, 10, 1]);
const cut = Buffer.concat([Buffer.from([6, 0, 0, 0, 0, 0, 0, 5]), Buffer.from("hello")]);
const cutExtended = Buffer.concat([Buffer.from([6, 0, 0, 0, 0xff, 0xff, 0xff, 0xfc]), Buffer.from([0, 0, 0, 1])]);
const qemuKey = Buffer.from([255, 0, 0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0x53]);
const qemuAudio = Buffer.from([255, 1, 0, 0]);
const xvp = Buffer.from([250, 0, 1, 4]);
const desktopSize = Buffer.concat([Buffer.from([251, 0, 4, 0, 3, 0, 1, 0]), Buffer.alloc(16)]);

const allowed = [setPixelFormat, setEncodings, updateRequest, continuous, fence];
const dropped = [key, pointer, pointerExtended, cut, cutExtended, qemuKey, qemuAudio, xvp, desktopSize];

function run(stream: Buffer, chunk: number): { out: Buffer; dropped: number; error?: string } {
  const f = new RfbReadOnlyFilter();
  const out: Buffer[] = [];
  let n = 0;
  for (let i = 0; i < stream.length; i += chunk) {
    const r = f.push(stream.subarray(i, i + chunk));
    if ("error" in r) return { out: Buffer.concat(out), dropped: n, error: r.error };
    out.push(r.pass);
    n += r.dropped;
  }
  return { out: Buffer.concat(out), dropped: n };
}

t.test("what asks for pictures passes unchanged, input never does, whatever the chunks", async (t) => {
  const mixed = [...allowed, ...dropped, ...allowed.slice().reverse(), ...dropped.slice().reverse()];
  const stream = Buffer.concat([handshake, ...mixed]);
  const want = Buffer.concat([handshake, ...allowed, ...allowed.slice().reverse()]);
  for (const chunk of [1, 2, 3, 7, 64, stream.length]) {
    const r = run(stream, chunk);
    t.equal(r.error, undefined, `chunks of ${chunk}: no error`);
    t.ok(r.out.equals(want), `chunks of ${chunk}: exactly the allowed bytes, in order`);
    t.equal(r.dropped, dropped.length * 2, `chunks of ${chunk}: every input message dropped`);
  }
});

t.test("what cannot be framed or is not the expected handshake ends the session", async (t) => {
  t.match(run(Buffer.concat([handshake, Buffer.from([99, 0, 0, 0])]), 64).error, /type 99/, "an unknown message type");
  t.match(run(Buffer.concat([handshake, Buffer.from([255, 7])]), 64).error, /subtype 7/, "an unknown qemu subtype");
  t.match(run(Buffer.from("RFB 003.003\n"), 64).error, /version/, "RFB 3.3 (no security choice by the client)");
  t.match(run(Buffer.concat([Buffer.from("RFB 003.008\n"), Buffer.from([2])]), 64).error, /security type 2/, "VNC authentication");
  const huge = Buffer.concat([handshake, Buffer.from([6, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff])]);
  t.match(run(huge, 64).error, /cut text/, "a cut text too large to hold");
  const partial = run(Buffer.concat([handshake, updateRequest.subarray(0, 5)]), 64);
  t.ok(partial.out.equals(handshake) && partial.error === undefined, "half a message waits for the rest");
});
