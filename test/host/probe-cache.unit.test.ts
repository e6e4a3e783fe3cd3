// The probe cache answers a restart without running qemu, but only while the
// program is the very file that was probed under the same kernel: an upgraded
// qemu (new inode, size or mtime) or a new kernel must be probed afresh, and a
// cached answer that has gone stale is corrected for the next start.
import { mkdtemp, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import t, { type Test } from "tap";
import { binaryKey, ProbeCache, sameKey } from "../../src/host/probe-cache.js";

const log = pino({ level: "silent" });

async function setup(t: Test): Promise<{ dir: string; bin: string; file: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-probe-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const bin = path.join(dir, "qemu-system-x86_64");
  await writeFile(bin, "#!/bin/sh\n", { mode: 0o755 });
  return { dir, bin, file: path.join(dir, "probe-cache.json") };
}

/** A probe that counts its runs and answers `answer`. */
function counting(answer: () => string): { probe: () => Promise<string>; runs: () => number } {
  let n = 0;
  return { probe: async () => (n++, answer()), runs: () => n };
}

t.test("a second start is answered from the file without probing", async (t) => {
  const { bin, file } = await setup(t);
  const p = counting(() => "7.2.22");
  t.equal(await new ProbeCache(file, log, "6.1.0").get("qemu-version", bin, p.probe), "7.2.22");
  t.equal(p.runs(), 1);
  t.equal(await new ProbeCache(file, log, "6.1.0").get("qemu-version", bin, p.probe), "7.2.22");
  t.equal(p.runs(), 1, "not probed again");
  const stored = JSON.parse(await readFile(file, "utf8")) as Record<string, { key: { path: string }; value: unknown }>;
  t.equal(stored["qemu-version"]?.value, "7.2.22");
  t.equal(stored["qemu-version"]?.key.path, bin);
});

t.test("a changed binary or kernel is probed again", async (t) => {
  const { dir, bin, file } = await setup(t);
  let version = "7.2.22";
  const p = counting(() => version);
  const get = (kernel = "6.1.0"): Promise<string> => new ProbeCache(file, log, kernel).get("qemu-version", bin, p.probe);
  await get();

  // Same size, same mtime, new inode: the package manager's rename over the old file.
  const before = await stat(bin);
  const next = path.join(dir, "new");
  await writeFile(next, "#!/bin/zz\n", { mode: 0o755 });
  await utimes(next, before.atime, before.mtime);
  await rename(next, bin);
  version = "8.0.0";
  t.equal(await get(), "8.0.0", "new inode");
  t.equal(p.runs(), 2);

  // Same inode, new size.
  await writeFile(bin, "#!/bin/sh\n# longer\n");
  version = "8.0.1";
  t.equal(await get(), "8.0.1", "new size");

  // Same inode and size, new mtime.
  const st = await stat(bin);
  await utimes(bin, st.atime, new Date(st.mtimeMs + 60_000));
  version = "8.0.2";
  t.equal(await get(), "8.0.2", "new mtime");

  version = "8.0.3";
  t.equal(await get("6.12.0"), "8.0.3", "new kernel release");
  t.equal(p.runs(), 5);
  t.equal(await get("6.12.0"), "8.0.3", "and then cached again");
  t.equal(p.runs(), 5);
});

t.test("a hit is probed again by refresh(): a changed answer is for the next start", async (t) => {
  const { bin, file } = await setup(t);
  let uring = "yes";
  const p = counting(() => uring);
  await new ProbeCache(file, log, "k").get("io-uring", bin, p.probe);
  uring = "no"; // e.g. kernel.io_uring_disabled set since
  const second = new ProbeCache(file, log, "k");
  t.equal(await second.get("io-uring", bin, p.probe), "yes", "the start itself uses the cached answer");
  await second.refresh();
  t.equal(p.runs(), 2, "probed once in the background");
  const third = new ProbeCache(file, log, "k");
  t.equal(await third.get("io-uring", bin, p.probe), "no", "the next start has the new answer");
  t.equal(p.runs(), 2);
});

t.test("a damaged cache file, or a binary that is not there, means probing", async (t) => {
  const { dir, bin, file } = await setup(t);
  await writeFile(file, "{not json");
  const p = counting(() => "v");
  t.equal(await new ProbeCache(file, log, "k").get("qemu-version", bin, p.probe), "v");
  t.equal(p.runs(), 1);
  const missing = path.join(dir, "no-such-qemu");
  await new ProbeCache(file, log, "k").get("qemu-version", missing, p.probe);
  await new ProbeCache(file, log, "k").get("qemu-version", missing, p.probe);
  t.equal(p.runs(), 3, "never cached: the probe reports why the binary cannot run");
});

t.test("a bare name is the file on the children's PATH", async (t) => {
  const key = await binaryKey("sh", "k");
  t.match(key.path, /^\/(usr\/)?(s)?bin\/sh$/);
  t.ok(sameKey(key, await binaryKey(key.path, "k")));
  t.notOk(sameKey(key, await binaryKey(key.path, "other")));
});
