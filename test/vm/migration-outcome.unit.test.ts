// The VM's "migration outcome unknown" holder: the guard that refuses resume and
// a pass-through `cont` while it is set (and only then), and the hand-over of an
// operator's outcome to the waiting migration. Also: journal entries of a
// migration with and without its id (written before ids) both read back.
import t from "tap";
import { MigrationOutcome, refuseWhileOutcomeUnknown } from "../../src/vm/migration-outcome.js";
import { parseJournalEntry } from "../../src/store/operation-journal.js";

t.test("resume and cont are refused only while the outcome is unknown", async (t) => {
  let changes = 0;
  const vm = { name: "vm1", migrationOutcome: new MigrationOutcome(() => changes++) };
  const resume = { kind: "resume" } as const;
  const cont = { kind: "qmp", command: "cont" } as const;
  const stop = { kind: "qmp", command: "stop" } as const;
  t.doesNotThrow(() => refuseWhileOutcomeUnknown(vm, resume), "no migration: resume goes on");
  vm.migrationOutcome.enter({ since: new Date().toISOString(), destination: "http://b:1" });
  t.throws(() => refuseWhileOutcomeUnknown(vm, resume), { code: "VMH_ERR_MIGRATION_OUTCOME_UNKNOWN", status: 409 });
  t.throws(() => refuseWhileOutcomeUnknown(vm, cont), { code: "VMH_ERR_MIGRATION_OUTCOME_UNKNOWN" });
  t.doesNotThrow(() => refuseWhileOutcomeUnknown(vm, stop), "what keeps it paused is not refused here");
  vm.migrationOutcome.leave();
  t.doesNotThrow(() => refuseWhileOutcomeUnknown(vm, cont));
  t.equal(changes, 2, "entering and leaving each announce a state change");
});

t.test("an operator's outcome reaches the waiting migration, which settles the request", async (t) => {
  const holder = new MigrationOutcome(() => {});
  t.throws(() => holder.resolve("vm1", "aborted"), { code: "VMH_ERR_VM_STATE" }, "nothing to resolve");
  holder.enter({ since: new Date().toISOString(), destination: "http://b:1" });
  t.equal(await holder.nextRequest(10), undefined, "no request: the wait times out");
  const resolved = holder.resolve("vm1", "committed");
  t.throws(() => holder.resolve("vm1", "aborted"), { code: "VMH_ERR_VM_STATE" }, "one request at a time");
  const req = await holder.nextRequest(5_000);
  t.equal(req?.outcome, "committed");
  req!.done(new Error("refused"));
  await t.rejects(resolved, /refused/, "the operator hears the refusal");
  const again = holder.resolve("vm1", "aborted");
  holder.leave();
  await t.resolves(again, "a request left when the migration settled by itself is answered");
});

t.test("a migration's journal entry reads back with or without its id", async (t) => {
  const base = { id: "e1", vm: "vm1", startedAt: "2026-01-01T00:00:00.000Z", done: ["destination-prepared", "ram-completed"] };
  const action = { kind: "migrate", destination: "http://b:8600", storage: "shared" };
  t.equal(parseJournalEntry({ ...base, action, facts: { job: "j1" } }).facts.migration, undefined, "an entry from before ids");
  const id = "00000000-0000-4000-8000-000000000001";
  t.equal(parseJournalEntry({ ...base, action, facts: { job: "j1", migration: id } }).facts.migration, id);
  const earlier = parseJournalEntry({ ...base, operation: "migrate", params: { destination: "http://b:8600", storage: "copy", job: "j1" } });
  t.same(earlier.action, { kind: "migrate", destination: "http://b:8600", storage: "copy" }, "the earliest format too");
});
