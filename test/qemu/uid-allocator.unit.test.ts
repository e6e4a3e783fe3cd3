// Per-VM uids only move forward through the range, past a mark that survives a
// restart; once the range is used up, a uid comes back only if no VM holds it and
// it owns no file.
import { chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { UidAllocator, uidsOwningFiles } from "../../src/qemu/uid-allocator.js";

const range = { start: 700_000, count: 3 };

t.test("forward only, durable, and reuse only of uids that own nothing", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-uid-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const mark = path.join(dir, "qemu-uid-mark");
  let owned = new Set<number>();
  let scans = 0;
  const scan = async () => (scans++, owned);

  const a = new UidAllocator(range, mark, scan);
  t.equal(await a.allocate(new Set()), 700_000);
  t.equal(scans, 1, "a first start without a mark looks at the files once");
  t.equal(await a.allocate(new Set()), 700_001, "the first VM deleted (nothing held): still the next uid");
  t.equal((await readFile(mark, "utf8")).trim(), "700002", "the mark is on disk before the uid is used");

  // A restart: a new allocator on the same mark carries on from it.
  const b = new UidAllocator(range, mark, scan);
  t.equal(await b.allocate(new Set()), 700_002);
  t.equal(scans, 1, "no scan while the range is not used up");
  owned = new Set([700_000]);
  t.equal(await b.allocate(new Set([700_002])), 700_001, "wrapped: the first uid neither held nor owning a file");
  owned = new Set([700_000, 700_001]);
  await t.rejects(b.allocate(new Set([700_002])), { name: "UidRangeExhausted" }, "none left: refused, never shared");
});

t.test("a state directory without a mark starts above every uid that owns a file", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-uid-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const pool = path.join(dir, "pool");
  await mkdir(path.join(pool, "sub"), { recursive: true });
  await writeFile(path.join(pool, "sub", "left.qcow2"), "x");
  await chown(path.join(pool, "sub", "left.qcow2"), 700_001, 0);
  await symlink("/etc/passwd", path.join(pool, "link"));
  t.same([...(await uidsOwningFiles([pool], range))], [700_001], "found in a subdirectory");
  const a = new UidAllocator(range, path.join(dir, "mark"), () => uidsOwningFiles([pool], range));
  t.equal(await a.allocate(new Set()), 700_002);
});

t.test("the mark is set at start-up, before files of other VMs arrive", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-uid-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const mark = path.join(dir, "mark");
  let owned = new Set<number>();
  const a = new UidAllocator(range, mark, async () => owned);
  await a.init(new Set());
  t.equal((await readFile(mark, "utf8")).trim(), "700000", "a fresh host starts at the range's start");
  owned = new Set([700_000, 700_001]);
  await a.init(new Set());
  t.equal((await readFile(mark, "utf8")).trim(), "700000", "a mark once written is kept");
  t.equal(await a.allocate(new Set()), 700_000);
});
