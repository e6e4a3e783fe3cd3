// The journal rules of action-journal.ts, applied to a real journal file in a temp
// dir: what is on disk while an action runs, and what it leaves when it succeeds
// or fails, for each kind of rule (a device change, a start, a stop).
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import t, { type Test } from "tap";
import { OperationJournal } from "../../src/store/operation-journal.js";
import { endEntry, journaled, journalRules, type JournaledVm } from "../../src/vm/action-journal.js";

async function fakeVm(t: Test) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-action-journal-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "journal.json");
  const stateErrors: string[] = [];
  const vm: JournaledVm = {
    name: "web-1",
    journal: new OperationJournal(file),
    log: pino({ level: "silent" }),
    recordState: async (write) => {
      try {
        await write();
        return true;
      } catch (err) {
        stateErrors.push((err as Error).message);
        return false;
      }
    },
  };
  const onDisk = () => new OperationJournal(file).readInterrupted();
  return { vm, dir, onDisk, stateErrors };
}

t.test("a device change: on disk with its progress while it runs, gone once done or undone", async (t) => {
  const { vm, onDisk } = await fakeVm(t);
  const action = { kind: "resize-disk" as const, disk: "root", sizeGiB: 20 };
  const seen: unknown[] = [];
  await journaled(
    vm,
    action,
    async () => {
      await vm.journal.stepDone("grow");
      seen.push(await onDisk());
    },
    { live: true },
  );
  t.match(seen, [{ vm: "web-1", action, facts: { live: true }, done: ["grow"] }], "a daemon killed meanwhile would find the action and its progress");
  t.equal(await onDisk(), undefined, "done: the entry is gone");

  const failure = new Error("grow failed");
  await t.rejects(journaled(vm, action, async () => Promise.reject(failure)), failure, "the body's own error reaches the caller");
  t.equal(await onDisk(), undefined, "undone: the entry is gone too");
});

t.test("a device change whose entry cannot be written does not act", async (t) => {
  const { vm, dir } = await fakeVm(t);
  await rm(dir, { recursive: true, force: true });
  let ran = false;
  await t.rejects(journaled(vm, { kind: "eject-cdrom" }, async () => void (ran = true)), { code: "ENOENT" });
  t.equal(ran, false);
});

t.test("a start: written alongside its checks; a failed start leaves no entry", async (t) => {
  const { vm, onDisk } = await fakeVm(t);
  const seen: unknown[] = [];
  await t.rejects(
    journaled(vm, { kind: "start" }, async (begun) => {
      await begun;
      seen.push(await onDisk());
      throw new Error("spawn failed");
    }),
    /spawn failed/,
  );
  t.match(seen, [{ action: { kind: "start" } }], "the intent is on disk before qemu would be spawned");
  t.equal(await onDisk(), undefined, "nothing for a restarted daemon to undo");
});

t.test("a stop: a full state disk does not keep the guest running; a failed stop keeps its entry", async (t) => {
  const { vm, dir, onDisk, stateErrors } = await fakeVm(t);
  await t.rejects(journaled(vm, { kind: "stop" }, async () => Promise.reject(new Error("qemu did not go"))), /qemu did not go/);
  t.match(await onDisk(), { action: { kind: "stop" } }, "kept for the next daemon's recovery");
  await endEntry(vm, "strict");

  await rm(dir, { recursive: true, force: true });
  let stopped = false;
  await journaled(vm, { kind: "stop" }, async () => void (stopped = true));
  t.equal(stopped, true, "stopped without its entry");
  t.equal(stateErrors.length, 1, "the VM notes that its state could not be recorded");
});

t.test("a migration's entry stays after its run: its outcome ends it", async (t) => {
  const { vm, onDisk } = await fakeVm(t);
  await journaled(vm, { kind: "migrate-in", storage: "copy" }, async () => {}, { createdImages: [] });
  t.match(await onDisk(), { action: { kind: "migrate-in", storage: "copy" } });
  await endEntry(vm, "strict");
  t.equal(await onDisk(), undefined);
  t.equal(journalRules.reset, "none", "an action with nothing to finish after a restart is not journaled");
});
