// The fence's decision at one poll, as a pure function: deadlines on the boottime
// clock, a lost or replaced lease that a new one never disarms, the disarm once
// every ha qemu left is keyed under the new lease, refusal, and when the watchdog
// is petted.
import t from "tap";
import { BOOTTIME_RESOLUTION_NS, parseUptimeNs } from "../../src/fleet/boottime.js";
import { decideFence, fenceDeadlineNs, leaseTrust, nextLoss, type VisibleQemu } from "../../src/fleet/fence/fence-decision.js";
import { fenceMarginMs, type FenceState } from "../../src/fleet/fence/fence-state.js";

const S = 1_000_000_000n;
const POLL = 100;
const qemu = { pid: 10, startTicks: 5, uuid: "u1", exe: { path: "/usr/bin/qemu-system-x86_64", dev: 1, ino: 2 } };

function state(over: Partial<FenceState> = {}): FenceState {
  return {
    leaseId: "L1",
    renewedSentAtBootNs: (100n * S).toString(),
    ttlMs: 5_000,
    marginMs: fenceMarginMs(5_000),
    runDir: "/run/vmhostd",
    ha: [{ name: "a", uuid: "u1", keyLease: "L1", qemu }],
    writtenAt: "",
    ...over,
  };
}
const running: VisibleQemu[] = [{ vm: "a", pid: 10, startTicks: 5 }];

t.test("/proc/uptime is read exactly, rounded down to its 10 ms", async (t) => {
  t.equal(parseUptimeNs("12345.67 999.00\n"), 12345n * S + 670_000_000n);
  t.equal(parseUptimeNs("0.05 0.00\n"), 50_000_000n);
  t.equal(BOOTTIME_RESOLUTION_NS, 10_000_000n);
  t.throws(() => parseUptimeNs("garbage"));
});

t.test("deadline arithmetic on boottime: send time + TTL − margin; expiry at send time + TTL", async (t) => {
  t.equal(fenceMarginMs(5_000), 1_000, "at least 1 s");
  t.equal(fenceMarginMs(10_000), 2_000, "a fifth of the TTL");
  t.equal(fenceDeadlineNs(state()), 104n * S);
  t.equal(fenceDeadlineNs(state({ renewedSentAtBootNs: undefined })), undefined);
  t.equal(leaseTrust(state(), 104n * S - 1n).trusted, true, "just before the deadline");
  const late = leaseTrust(state(), 104n * S + 250_000_000n);
  t.equal(late.trusted, false, "at or past it: not trusted");
  t.equal(late.lateMs, 250);
  t.equal(late.expiryNs, 105n * S);
  // A suspend of 30 s between renewal and now counts: boottime runs on; monotonic would not.
  t.equal(leaseTrust(state(), 130n * S).trusted, false, "time spent suspended counts against the lease");
});

t.test("past the deadline every visible ha qemu is killed, and the watchdog is not petted while one lives", async (t) => {
  const d = decideFence(state(), 104n * S, running, [], POLL);
  t.equal(d.mode, "fencing");
  t.same(d.kill, running);
  t.equal(d.pet, false);
  const after = decideFence(state(), 104n * S, [], [], POLL);
  t.equal(after.mode, "fencing", "still fencing once they are dead (a qemu started meanwhile is killed too)");
  t.equal(after.pet, true, "nothing left alive: petting resumes");
});

t.test("a lost lease fences at once, before its deadline", async (t) => {
  const s = state({ lost: { leaseId: "L1", reason: "expired or revoked at etcd", at: "" } });
  const d = decideFence(s, 101n * S, running, [], POLL);
  t.equal(d.mode, "fencing");
  t.same(d.kill, running);
  t.match(d.cause, /lease L1 lost/);
});

t.test("a new lease does not disarm: qemus whose key went with the old lease are still killed", async (t) => {
  const fresh = { leaseId: "L2", renewedSentAtBootNs: (101n * S).toString(), lost: { leaseId: "L1", reason: "revoked", at: "" } };
  // Key still recorded under the lost lease, or not held at all.
  for (const keyLease of ["L1", undefined]) {
    const s = state({ ...fresh, ha: [{ name: "a", uuid: "u1", ...(keyLease ? { keyLease } : {}), qemu }] });
    const d = decideFence(s, 101n * S + 1n, running, [], POLL);
    t.equal(d.mode, "fencing", `key under ${keyLease ?? "no lease"}`);
    t.same(d.kill, running);
    t.equal(d.pet, false);
  }
  // The old rule (any fresh renewal disarms) would have let it live: that is the bug fixed.
  const withoutLoss = state({ leaseId: "L2", renewedSentAtBootNs: (101n * S).toString(), ha: [{ name: "a", uuid: "u1", keyLease: "L1", qemu }] });
  t.equal(decideFence(withoutLoss, 101n * S + 1n, running, [], POLL).mode, "armed", "(without the loss recorded, the fence could not know)");
});

t.test("the fence disarms once every ha qemu left runs under a key of the new lease", async (t) => {
  const s = state({
    leaseId: "L2",
    renewedSentAtBootNs: (101n * S).toString(),
    lost: { leaseId: "L1", reason: "revoked", at: "" },
    ha: [
      { name: "a", uuid: "u1", keyLease: "L2", qemu },
      { name: "b", uuid: "u2" },
    ],
  });
  const d = decideFence(s, 101n * S + 1n, running, [], POLL);
  t.equal(d.mode, "armed");
  t.same(d.kill, []);
  t.equal(d.pet, true);
  const stray = decideFence(s, 101n * S + 1n, [...running, { vm: "b", pid: 11 }], [], POLL);
  t.same(stray.kill, [{ vm: "b", pid: 11 }], "a qemu of another ha VM without a key under the new lease is killed");
});

t.test("refused: something it must see is hidden, said even with no ha qemu running", async (t) => {
  const refusals = [{ what: "vm a", why: "cannot read /proc/10/exe: EACCES" }];
  const d = decideFence(state(), 101n * S, running, refusals, POLL);
  t.equal(d.mode, "refused");
  t.match(d.cause, /EACCES/);
  t.equal(d.pet, true, "the lease is valid: petting goes on");
  const wd = [{ what: "watchdog", why: "cannot open /dev/watchdog: ENOENT" }];
  t.equal(decideFence(state({ ha: [{ name: "a", uuid: "u1" }] }), 101n * S, [], wd, POLL).mode, "refused");
  t.same(decideFence(state(), 104n * S, running, refusals, POLL).kill, running, "refusing to arm never stops a kill");
});

t.test("idle and armed", async (t) => {
  t.equal(decideFence(undefined, 0n, [], [], POLL).mode, "idle");
  t.equal(decideFence(state({ ha: [] }), 200n * S, [], [], POLL).mode, "idle", "no ha VM: nothing to guard, whatever the lease");
  t.equal(decideFence(state({ ha: [{ name: "a", uuid: "u1" }] }), 101n * S, [], [], POLL).mode, "idle", "ha VMs defined, none running");
  t.equal(decideFence(state(), 101n * S, running, [], POLL).mode, "armed");
});

t.test("the watchdog is petted only while the lease outlasts the watchdog's timeout", async (t) => {
  // Sent at 100 s, TTL 5 s: the lease cannot expire before 105 s. A 2 s watchdog and a 0.1 s poll.
  const s = state({ watchdog: { device: "/dev/watchdog", timeoutMs: 2_000 } });
  t.equal(decideFence(s, 102n * S, running, [], POLL).pet, true, "at 102 s a freeze now resets the host by 104 s: pet");
  t.equal(decideFence(s, 102n * S + 899_999_999n, running, [], POLL).pet, true, "up to expiry − timeout − one poll");
  t.equal(decideFence(s, 102n * S + 900_000_000n, running, [], POLL).pet, false, "later, a reset could come after the lease expired: no pet");
  t.equal(decideFence(s, 103n * S, [], [], POLL).pet, true, "no ha qemu alive: nothing to protect, pet");
});

t.test("the daemon's side: a loss is recorded when the lease is replaced, and ends once every running ha VM is keyed under the new lease", async (t) => {
  const at = "2026-01-01T00:00:00Z";
  t.same(nextLoss(undefined, undefined, "L1", [{ qemu }], at), { lost: undefined }, "a first lease: nothing lost");
  t.same(nextLoss(undefined, "L1", "L1", [{ qemu }], at), { lost: undefined }, "a renewal of the same lease (a restart inside the TTL included)");
  // A new lease though nobody said the old one went (e.g. revoked while the daemon was down).
  const replaced = nextLoss(undefined, "L1", "L2", [{ qemu }], at);
  t.same(replaced, { lost: { leaseId: "L1", reason: "replaced by a new lease", at }, change: "replaced" });
  const lost = { leaseId: "L1", reason: "expired or revoked at etcd", at };
  t.same(nextLoss(lost, "L1", "L1", [], at), { lost }, "the lost lease's own renewal never ends the loss");
  t.same(nextLoss(lost, "L1", "L2", [{ qemu, keyLease: "L1" }], at), { lost }, "a qemu keyed under the old lease keeps it");
  t.same(nextLoss(lost, "L2", "L2", [{ qemu }], at), { lost }, "and one without a key");
  t.same(nextLoss(lost, "L2", "L2", [{ qemu, keyLease: "L2" }, {}], at), { lost: undefined, change: "ended" }, "keys re-acquired: the loss ends");
  t.same(nextLoss(lost, "L2", "L2", [{ keyLease: "L1" }], at), { lost: undefined, change: "ended" }, "or nothing of it runs any more");
});
