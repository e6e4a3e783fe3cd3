import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { writeFileAtomic, writeJsonAtomic } from "../../src/store/atomic-file.js";

t.test("replaces the file whole and leaves no temp file", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-atomic-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f = path.join(dir, "x.json");
  await writeJsonAtomic(f, { a: 1 });
  await writeJsonAtomic(f, { a: 2 });
  t.same(JSON.parse(await readFile(f, "utf8")), { a: 2 });
  t.same(await readdir(dir), ["x.json"]);
});

t.test("a failed write leaves the old file", async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-atomic-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const f = path.join(dir, "x");
  await writeFileAtomic(f, "old");
  await t.rejects(writeFileAtomic(path.join(dir, "missing-dir", "x"), "new"));
  t.equal(await readFile(f, "utf8"), "old");
});
