// BoundedLog on real files, with this process appending through an O_APPEND
// descriptor as qemu does: every byte lands at its logical offset across
// rotations, the files stay under the cap, and the start survives a new instance
// (a daemon restart).
import t from "tap";
import { execFileSync } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import pino from "pino";
import { BoundedLog } from "../../src/store/bounded-log.js";

const log = pino({ level: "silent" });

function line(i: number): string {
  return `LINE-${String(i).padStart(6, "0")}\n`; // 12 bytes
}

async function diskBytes(file: string): Promise<number> {
  const sizes = await Promise.all([file, `${file}.1`].map((f) => stat(f).then((s) => s.size, () => 0)));
  return sizes[0]! + sizes[1]!;
}

t.test("offsets keep their bytes across rotations and restarts", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-blog-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "console.log");
  const fd = openSync(file, "a");
  t.teardown(() => closeSync(fd));
  const cap = 4096;
  let b = new BoundedLog(file, cap, log);
  let rotations = 0;
  let most = 0;
  for (let i = 0; i < 2000; i++) {
    writeSync(fd, line(i));
    if (await b.enforce()) rotations++;
    most = Math.max(most, await diskBytes(file));
    // Half way, a new instance (the daemon restarted) must carry on from the recorded start.
    if (i === 1000) b = new BoundedLog(file, cap, log);
  }
  t.ok(rotations > 5, `rotated ${rotations} times`);
  t.ok(most <= cap + 12, `never past the cap by more than one write (most ${most})`);
  const all = await b.read(0, 1 << 20);
  t.equal(all.end, 2000 * 12, "the end counts every byte ever written");
  t.ok(all.skipped > 0 && all.from === all.start && all.start === all.skipped, "offset 0 was rotated away and said so");
  t.equal(all.next, all.end);
  // Every kept byte sits at its logical offset in the stream written.
  const stream = Array.from({ length: 2000 }, (_, i) => line(i)).join("");
  t.equal(all.data.toString(), stream.slice(all.from));
  // A page read in the middle, crossing from .1 into the live file.
  const l = await b.layout();
  const page = await b.read(l.currentStart - 10, 24);
  t.equal(page.data.toString(), stream.slice(l.currentStart - 10, l.currentStart + 14));
  t.equal(page.from, l.currentStart - 10);
  t.equal(page.next, l.currentStart + 14);
});

t.test("a log found far past its cap is brought under it in one rotation", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-blog-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "qemu.log");
  await writeFile(file, Array.from({ length: 10_000 }, (_, i) => line(i)).join(""));
  await writeFile(`${file}.1.tmp`, "half-made copy of a killed daemon");
  const b = new BoundedLog(file, 8192, log);
  t.equal(await b.enforce(), true);
  t.ok((await diskBytes(file)) <= 8192);
  await t.rejects(stat(`${file}.1.tmp`), { code: "ENOENT" }, "the half-made copy is gone");
  const r = await b.read(0, 1 << 20);
  t.equal(r.end, 120_000);
  t.equal(r.start, 120_000 - 4096, "half the cap kept");
  t.match(r.data.toString(), /LINE-009999\n$/);
});

t.test("on a full disk the bound wins over the history", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-blog-"));
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]);
  t.teardown(async () => {
    execFileSync("umount", ["-l", dir]);
    await rm(dir, { recursive: true, force: true });
  });
  const file = path.join(dir, "console.log");
  // The disk is full: no room for the 8K copy of the newest bytes.
  await writeFile(file, Buffer.alloc(60 * 1024, "y"));
  const b = new BoundedLog(file, 16 * 1024, log);
  t.equal(await b.enforce(), true);
  t.equal(await diskBytes(file), 0, "the live file was emptied anyway");
  await t.rejects(stat(`${file}.1.tmp`), { code: "ENOENT" }, "no partial copy left behind");
  const r = await b.read(0, 1024);
  t.same({ start: r.start, end: r.end, skipped: r.skipped, length: r.data.length }, { start: 60 * 1024, end: 60 * 1024, skipped: 60 * 1024, length: 0 });
});
