// deriveState over every combination of the facts it reads: the operation in
// flight (each name), a definition that cannot be read, qemu alive or not,
// each RunState qemu can report, and how the last run ended.
import t from "tap";
import type { LastExit } from "../../src/store/runtime-store.js";
import { deriveState, vmStates, type StateFacts, type VmState } from "../../src/vm/vm-state.js";
import type { VmActionKind } from "../../src/definition/vm-action.js";

// A Record, so that a new operation name fails to compile here until it is given a row.
const operationKinds: Record<VmActionKind, "adopt" | "migration" | "start" | "stopping" | "other"> = {
  adopt: "adopt",
  migrate: "migration",
  "migrate-in": "migration",
  start: "start",
  shutdown: "stopping",
  stop: "stopping",
  create: "other",
  delete: "other",
  reset: "other",
  pause: "other",
  resume: "other",
  "change-cdrom": "other",
  "eject-cdrom": "other",
  "set-limits": "other",
  "resize-disk": "other",
  "add-disk": "other",
  "remove-disk": "other",
  "add-nic": "other",
  "remove-nic": "other",
  "set-balloon": "other",
  "set-cloud-init": "other",
  "set-nic-filter": "other",
  "release-owner": "other",
  backup: "other",
  "snapshot-create": "other",
  "snapshot-revert": "other",
  "snapshot-delete": "other",
  "export-disk": "other",
  "unexport-disk": "other",
  takeover: "other",
  "resolve-migration": "other",
  qmp: "other",
};
const operations = [undefined, ...(Object.keys(operationKinds) as VmActionKind[])];

/** qemu 7.2's RunState values (qapi/run-state.json), and no status heard yet. */
const qemuStatuses = [
  undefined,
  "debug",
  "inmigrate",
  "internal-error",
  "io-error",
  "paused",
  "postmigrate",
  "prelaunch",
  "finish-migrate",
  "restore-vm",
  "running",
  "save-vm",
  "shutdown",
  "suspended",
  "watchdog",
  "guest-panicked",
  "colo",
];

const exit = (reason: string): LastExit => ({ at: "2026-01-01T00:00:00.000Z", reason, exitCode: null, signal: null });
const lastExits = [undefined, exit("crashed"), exit("guest-shutdown"), exit("host-stop")];

/** What qemu's own status means while no operation says otherwise. */
function fromQemuStatus(status: string | undefined): VmState {
  if (status === undefined) return "unknown";
  if (status === "running") return "running";
  if (status === "shutdown") return "shutting-down";
  if (status === "internal-error" || status === "guest-panicked") return "crashed";
  return "paused";
}

/** The rules written out by kind of operation, the one that decides first at the top. */
function expected(f: StateFacts): VmState {
  const kind = f.operation ? operationKinds[f.operation] : undefined;
  if (f.broken) return "error";
  if (kind === "adopt") return "unknown";
  if (f.operation === "migrate" && f.outcomeUnknown) return "paused";
  if (kind === "migration") return "migrating";
  if (kind === "start") return "starting";
  if (!f.qemuAlive) return f.lastExit?.reason === "crashed" ? "crashed" : "stopped";
  if (kind === "stopping") return "shutting-down";
  return fromQemuStatus(f.qemuStatus);
}

function* allFacts(): Generator<StateFacts> {
  for (const operation of operations)
    for (const broken of [undefined, "definition unreadable"])
      for (const qemuAlive of [false, true])
        for (const qemuStatus of qemuAlive ? qemuStatuses : [undefined])
          for (const lastExit of lastExits)
            for (const outcomeUnknown of [false, true]) yield { operation, broken, qemuAlive, qemuStatus, lastExit, outcomeUnknown };
}

t.test("every combination of facts gives the state the rules say", async (t) => {
  const wrong: { facts: StateFacts; got: VmState; want: VmState }[] = [];
  const seen = new Set<VmState>();
  let n = 0;
  for (const facts of allFacts()) {
    n++;
    const got = deriveState(facts);
    seen.add(got);
    const want = expected(facts);
    if (got !== want) wrong.push({ facts, got, want });
  }
  t.ok(n > 2000, `${n} combinations checked`);
  t.same(wrong, [], "no combination is derived differently");
  t.same([...seen].sort(), [...vmStates].sort(), "every state is reachable, and nothing outside the list is derived");
});

t.test("the cases that matter, spelt out", async (t) => {
  const running = { qemuAlive: true, qemuStatus: "running" };
  t.equal(deriveState({ qemuAlive: false }), "stopped", "never started");
  t.equal(deriveState({ qemuAlive: false, lastExit: exit("crashed") }), "crashed", "qemu died on its own");
  t.equal(deriveState({ qemuAlive: false, lastExit: exit("guest-shutdown") }), "stopped", "the guest powered off");
  t.equal(deriveState({ ...running, lastExit: exit("crashed") }), "running", "a crash of an earlier run does not outlive a new start");
  t.equal(deriveState({ ...running, broken: "definition unreadable" }), "error", "an unreadable definition wins over a live qemu");
  t.equal(deriveState({ operation: "start", qemuAlive: false }), "starting", "before the spawn");
  t.equal(deriveState({ operation: "start", qemuAlive: true, qemuStatus: "prelaunch" }), "starting", "spawned, not yet `cont`");
  t.equal(deriveState({ operation: "stop", qemuAlive: false }), "stopped", "a stop whose qemu is gone has stopped");
  t.equal(deriveState({ operation: "shutdown", ...running }), "shutting-down", "the guest is asked and still runs");
  t.equal(deriveState({ operation: "pause", ...running }), "running", "a pause in flight shows qemu's word until qemu changes it");
  t.equal(deriveState({ operation: "adopt", ...running }), "unknown", "adoption under way: not yet known");
  t.equal(deriveState({ operation: "migrate", qemuAlive: true, qemuStatus: "postmigrate" }), "migrating");
  t.equal(deriveState({ operation: "migrate-in", qemuAlive: true, qemuStatus: "inmigrate" }), "migrating");
  t.equal(
    deriveState({ operation: "migrate", qemuAlive: true, qemuStatus: "postmigrate", outcomeUnknown: true }),
    "paused",
    "a migration out whose outcome is unknown holds the guest paused here, and says so",
  );
  t.equal(deriveState({ qemuAlive: true }), "unknown", "alive but not heard from (no monitor)");
  t.equal(deriveState({ qemuAlive: true, qemuStatus: "shutdown" }), "shutting-down", "-action shutdown=pause: the guest powered off, qemu waits");
  t.equal(deriveState({ qemuAlive: true, qemuStatus: "guest-panicked" }), "crashed");
  t.equal(deriveState({ qemuAlive: true, qemuStatus: "io-error" }), "paused", "stopped on a disk error: not executing");
});
