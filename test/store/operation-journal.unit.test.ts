// The operation journal's codec: what one daemon writes (the action itself and
// its progress), the next reads back after a crash; a damaged or foreign file, or
// an action outside the union, reads as "nothing interrupted" (the VM is then
// adopted from qemu alone); entries as earlier daemons wrote them (an operation
// name with params) still read, converted to the action they were. A real
// journal in a temp dir.
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t, { type Test } from "tap";
import { OperationJournal, type JournalFacts } from "../../src/store/operation-journal.js";
import type { VmAction } from "../../src/definition/vm-action.js";

async function journalFile(t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-journal-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, "journal.json");
}

t.test("begin, steps and end: on disk at each point, and read back by the next daemon", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  const told: string[] = [];
  t.equal(await journal.readInterrupted((_err, raw) => told.push(raw)), undefined, "no file: nothing was interrupted");
  t.same(told, [], "and that is not a damaged entry");

  const disk = { name: "data", sizeGiB: 1, format: "qcow2" as const, bus: "virtio-blk" as const, cache: "none" as const };
  const entry = await journal.begin("web-1", { kind: "add-disk", disk }, { live: true });
  t.match(entry, { vm: "web-1", action: { kind: "add-disk", disk }, done: [], facts: { live: true } });
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
  await t.rejects(journal.begin("web-1", { kind: "start" }), { code: "ENOENT" });
  t.equal(journal.current, undefined, "no entry in memory that is not on disk");
  await journal.stepDone("spawn");
  t.equal(journal.current, undefined, "and so no steps recorded against it");
});

t.test("a damaged or foreign file reads as nothing interrupted", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  const valid = { id: "1", vm: "web-1", action: { kind: "start" }, startedAt: "2026-01-01T00:00:00.000Z", done: ["spawn"], facts: {} };
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
    ["no action", JSON.stringify({ ...valid, action: undefined })],
    ["an action outside the union", JSON.stringify({ ...valid, action: { kind: "defragment" } })],
    ["an action with a field of the wrong type", JSON.stringify({ ...valid, action: { kind: "resize-disk", disk: "root", sizeGiB: "big" } })],
    ["an action with a field it does not have", JSON.stringify({ ...valid, action: { kind: "stop", force: true } })],
    ["facts that are a list", JSON.stringify({ ...valid, facts: ["x"] })],
    ["an earlier entry with params that are a list", JSON.stringify({ id: "1", vm: "web-1", operation: "start", startedAt: "x", done: [], params: ["x"] })],
    ["an earlier entry of an operation never journaled", JSON.stringify({ id: "1", vm: "web-1", operation: "reset", startedAt: "x", done: [] })],
    ["an earlier disk resize without its size", JSON.stringify({ id: "1", vm: "web-1", operation: "disk-resize", startedAt: "x", done: [], params: { disk: "root" } })],
  ];
  for (const [what, text] of cases) {
    await writeFile(file, text);
    const told: string[] = [];
    t.equal(await journal.readInterrupted((_err, raw) => told.push(raw)), undefined, what);
    t.same(told, [text], `${what}: the reader is told, with the entry as it is on disk`);
  }
  await writeFile(file, full);
  t.same(await journal.readInterrupted(), valid, "the same entry undamaged reads");
});

// Entries as daemons before the action union wrote them, one for every
// operation that journaled: each still reads after an upgrade, as the action it
// was, with what its recovery needs. Read, never rewritten: the entry is ended
// (removed) by the recovery it leads to.
const at = "2026-01-01T00:00:00.000Z";
const userNic = { model: "virtio-net", mac: "52:54:00:aa:bb:cc", network: { type: "user" } };
const dataDisk = { name: "data", sizeGiB: 1, format: "qcow2", bus: "virtio-blk", cache: "none" };
const images = [{ path: "/pools/a/web-1-root.qcow2", dev: 2049, ino: 1234 }];
const writtenBefore: Record<string, [string, object]> = {
  "a start cut short after its spawn": [
    `{
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
    { id: "5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a01", action: { kind: "start" }, done: ["check-and-prepare", "create-taps", "spawn"], facts: {} },
  ],
  "a shutdown, with its timeout": [
    `{
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
    { id: "5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a02", action: { kind: "shutdown", timeoutSec: 60 }, done: [], facts: {} },
  ],
  "a hard stop (no params at all)": [
    `{"id":"s","vm":"web-1","operation":"stop","startedAt":"${at}","done":[]}`,
    { id: "s", action: { kind: "stop" }, done: [], facts: {} },
  ],
  "a NIC hot-remove": [
    `{
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
    {
      id: "5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a03",
      action: { kind: "remove-nic", nic: "52:54:00:aa:bb:cc" },
      done: ["unplug"],
      facts: { nic: userNic, index: 0, live: true },
    },
  ],
  "a NIC hot-plug": [
    `{"id":"n","vm":"web-1","operation":"nic-add","startedAt":"${at}","done":["plug"],"params":{"nic":${JSON.stringify(userNic)},"index":1,"live":true}}`,
    { id: "n", action: { kind: "add-nic", nic: userNic }, done: ["plug"], facts: { index: 1, live: true } },
  ],
  "a disk hot-plug": [
    `{"id":"d","vm":"web-1","operation":"disk-add","startedAt":"${at}","done":["create-file","plug"],"params":{"disk":${JSON.stringify(dataDisk)},"live":true}}`,
    { id: "d", action: { kind: "add-disk", disk: dataDisk }, done: ["create-file", "plug"], facts: { live: true } },
  ],
  "a disk removal from a stopped VM": [
    `{"id":"r","vm":"web-1","operation":"disk-remove","startedAt":"${at}","done":["unplug","record-definition"],"params":{"disk":${JSON.stringify(dataDisk)},"live":false}}`,
    { id: "r", action: { kind: "remove-disk", disk: "data" }, done: ["unplug", "record-definition"], facts: { disk: dataDisk, live: false } },
  ],
  "a CD-ROM eject (image null)": [
    `{"id":"5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a04","vm":"web-1","operation":"cdrom","startedAt":"2026-01-01T00:00:00.000Z","done":["check-image"],"params":{"image":null}}`,
    { id: "5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a04", action: { kind: "eject-cdrom" }, done: ["check-image"], facts: {} },
  ],
  "a CD-ROM change": [
    `{"id":"c","vm":"web-1","operation":"cdrom","startedAt":"${at}","done":[],"params":{"image":"isos:debian.iso"}}`,
    { id: "c", action: { kind: "change-cdrom", image: "isos:debian.iso" }, done: [], facts: {} },
  ],
  "a disk resize": [
    `{"id":"z","vm":"web-1","operation":"disk-resize","startedAt":"${at}","done":["grow"],"params":{"disk":"root","sizeGiB":20}}`,
    { id: "z", action: { kind: "resize-disk", disk: "root", sizeGiB: 20 }, done: ["grow"], facts: {} },
  ],
  "an outgoing migration": [
    `{"id":"5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a05","vm":"web-1","operation":"migrate","startedAt":"2026-01-01T00:00:00.000Z","done":[],"params":{"destination":"http://10.0.0.2:7070","storage":"copy","job":"j-1"}}`,
    {
      id: "5b0c2f0e-5a8f-4bb3-9d1e-2f0f1f8f6a05",
      action: { kind: "migrate", destination: "http://10.0.0.2:7070", storage: "copy" },
      done: [],
      facts: { job: "j-1" },
    },
  ],
  "an incoming migration, with the images made for it": [
    `{"id":"i","vm":"web-1","operation":"migrate-in","startedAt":"${at}","done":["receiving"],"params":{"storage":"copy","createdImages":${JSON.stringify(images)}}}`,
    { id: "i", action: { kind: "migrate-in", storage: "copy" }, done: ["receiving"], facts: { createdImages: images } },
  ],
};

t.test("entries written by earlier daemons read as the action they were", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  for (const [what, [text, expected]] of Object.entries(writtenBefore)) {
    await writeFile(file, text);
    t.same(await journal.readInterrupted(), { vm: "web-1", startedAt: at, ...expected }, what);
    t.equal(await readFile(file, "utf8"), text, `${what}: reading never rewrites the file`);
  }
});

t.test("what this daemon writes, the next reads back the same, for each journaled action", async (t) => {
  const file = await journalFile(t);
  for (const [what, [, expected]] of Object.entries(writtenBefore)) {
    const { action, facts } = expected as { action: VmAction; facts: JournalFacts };
    const journal = new OperationJournal(file);
    const entry = await journal.begin("web-1", action, facts);
    t.same(await new OperationJournal(file).readInterrupted(), entry, what);
  }
});

t.test("an entry with fields this daemon does not know", async (t) => {
  const file = await journalFile(t);
  const journal = new OperationJournal(file);
  const base = { id: "x", vm: "web-1", action: { kind: "stop" }, startedAt: at, done: [], facts: {} };
  await writeFile(file, JSON.stringify({ ...base, writtenBy: "a later daemon" }));
  t.same(await journal.readInterrupted(), base, "an unknown field is dropped, the entry still read");
  const { facts: _, ...withoutFacts } = base;
  await writeFile(file, JSON.stringify(withoutFacts));
  t.same(await journal.readInterrupted(), base, "no facts: none");
});
