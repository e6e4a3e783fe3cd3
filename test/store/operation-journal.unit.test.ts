// The operation journal's codec: what one daemon writes, the next reads back
// after a crash; a damaged or foreign file reads as "nothing interrupted" (the
// VM is then adopted from qemu alone); entries as earlier daemons wrote them
// still read. A real journal in a temp dir.
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import { OperationJournal } from "../../src/store/operation-journal.js";

async function journalFile(t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-journal-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, "journal.json");
}

t.test("begin, steps and end: on disk at each point, and read back by the next daemon", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  t.equal(await journal.readInterrupted(), undefined, "no file: nothing was interrupted");

  const entry = await journal.begin("web-1", "disk-add", { disk: { name: "data", sizeGiB: 1 }, live: true });
  t.match(entry, { vm: "web-1", operation: "disk-add", done: [], params: { disk: { name: "data", sizeGiB: 1 }, live: true } });
  t.match(entry.id, /^[0-9a-f-]{36}$/, "a uuid per entry");
  t.ok(!Number.isNaN(Date.parse(entry.startedAt)), "startedAt is a timestamp");
  t.equal((await stat(file)).mode & 0o777, 0o600, "readable by the daemon only");

  await journal.stepDone("create-file");
  await journal.stepDone("plug");
  t.same(journal.current?.done, ["create-file", "plug"]);
  const afterCrash = new OperationJournal(file);
  t.equal(afterCrash.current, undefined, "a new daemon holds no entry in memory");
  t.same(await afterCrash.readInterrupted(), { ...entry, done: ["create-file", "plug"] }, "it reads the whole entry back as written");

  await journal.end();
  t.equal(journal.current, undefined);
  await t.rejects(stat(file), { code: "ENOENT" }, "an operation that ended leaves no file");
  t.equal(await afterCrash.readInterrupted(), undefined);
});

t.test("a step with no operation begun is not recorded", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  await journal.stepDone("spawn");
  await t.rejects(stat(file), { code: "ENOENT" });
  await journal.end();
  t.equal(journal.current, undefined, "ending nothing is harmless");
});

t.test("an entry that could not be written is not held either", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(path.join(file, "no-such-dir", "journal.json"));
  await t.rejects(journal.begin("web-1", "start"), { code: "ENOENT" });
  t.equal(journal.current, undefined, "no entry in memory that is not on disk");
  await journal.stepDone("spawn");
  t.equal(journal.current, undefined, "and so no steps recorded against it");
});

t.test("a damaged or foreign file reads as nothing interrupted", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  const valid = { id: "1", vm: "web-1", operation: "start", startedAt: "2026-01-01T00:00:00.000Z", done: ["spawn"], params: {} };
  const full = JSON.stringify(valid, null, 2);
  const cases: [string, string][] = [
    ["empty (a crash before the first write reached the disk)", ""],
    ["torn in the middle", full.slice(0, full.length / 2)],
    ["not JSON at all", "\u0000\u0000\u0000\u0000"],
    ["JSON of another kind", JSON.stringify({ kind: "runtime-record", pid: 42 })],
    ["a list", JSON.stringify([valid])],
    ["null", "null"],
    ["steps that are not a list", JSON.stringify({ ...valid, done: "spawn" })],
    ["a step that is not a name", JSON.stringify({ ...valid, done: [1] })],
    ["no operation", JSON.stringify({ ...valid, operation: undefined })],
    ["params that are a list", JSON.stringify({ ...valid, params: ["x"] })],
  ];
  for (const [what, text] of cases) {
    await writeFile(file, text);
    t.equal(await journal.readInterrupted(), undefined, what);
  }
  await writeFile(file, full);
  t.same(await journal.readInterrupted(), valid, "the same entry undamaged reads");
});

// Entries as daemons since the first release write them (the format has not
// changed): each must still read after an upgrade, with the fields recovery uses.
const writtenBefore: Record<string, string> = {
  "a start cut short after its spawn": `{
  "id": "5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a01",
  "vm": "web-1",
  "operation": "start",
  "startedAt": "2026-01-01T00:00:00.000Z",
  "done": [
    "check-and-prepare",
    "create-taps",
    "spawn"
  ],
  "params": {}
}
`,
  "a shutdown, with its timeout": `{
  "id": "5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a02",
  "vm": "web-1",
  "operation": "shutdown",
  "startedAt": "2026-01-01T00:00:00.000Z",
  "done": [],
  "params": {
    "timeoutSec": 60
  }
}
`,
  "a NIC hot-remove": `{
  "id": "5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a03",
  "vm": "web-1",
  "operation": "nic-remove",
  "startedAt": "2026-01-01T00:00:00.000Z",
  "done": [
    "unplug"
  ],
  "params": {
    "nic": {
      "model": "virtio-net",
      "mac": "52:54:00:aa:bb:cc",
      "network": {
        "type": "user"
      }
    },
    "index": 0,
    "live": true
  }
}
`,
  "a CD-ROM eject (image null)": `{"id":"5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a04","vm":"web-1","operation":"cdrom","startedAt":"2026-01-01T00:00:00.000Z","done":["check-image"],"params":{"image":null}}`,
  "an outgoing migration": `{"id":"5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a05","vm":"web-1","operation":"migrate","startedAt":"2026-01-01T00:00:00.000Z","done":[],"params":{"destination":"http://10.0.0.2:7070","storage":"copy","job":"j-1"}}`,
};

t.test("entries written by earlier daemons still read, whole", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  for (const [what, text] of Object.entries(writtenBefore)) {
    await writeFile(file, text);
    t.same(await journal.readInterrupted(), JSON.parse(text), what);
  }
});

t.test("an entry without params (the field defaults) or with fields this daemon does not know", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  const base = { id: "x", vm: "web-1", operation: "stop", startedAt: "2026-01-01T00:00:00.000Z", done: [] };
  await writeFile(file, JSON.stringify(base));
  t.same(await journal.readInterrupted(), { ...base, params: {} }, "no params: an empty set");
  await writeFile(file, JSON.stringify({ ...base, params: {}, writtenBy: "a later daemon" }));
  t.same(await journal.readInterrupted(), { ...base, params: {} }, "an unknown field is dropped, the entry still read");
  t.equal(await readFile(file, "utf8"), JSON.stringify({ ...base, params: {}, writtenBy: "a later daemon" }), "reading never rewrites the file");
});
