// The limits as pure values: the schema's bounds and the fields its refusals
// name, the cgroup files (v1 and v2) and what is read back from them, the
// throttle group's QMP, the tc command sequence, the systemd scope's D-Bus call
// and the CLI's merge patch.
import t from "tap";
import { completeDefinition, vmCreateSchema } from "../../src/definition/vm-definition.js";
import { cgroupWrites, limitsFromCgroup, sharesToWeight, weightToShares } from "../../src/limits/cgroup-values.js";
import { chooseCgroupLayout, parseCgroupMounts, parseProcCgroup } from "../../src/limits/cgroup-host.js";
import { parentPaths, vmCgroupLeaf } from "../../src/limits/vm-cgroup.js";
import { diskLimitsFromThrottle, throttleLimits, throttleLimitsSet, throttleSetCommand } from "../../src/limits/disk-throttle.js";
import { burstBytes, ifbName, tapShapingCommands, tbfKbps } from "../../src/limits/tap-shaping.js";
import { limitsPatchSchema, mergeLimits } from "../../src/limits/limits-schema.js";
import { mergedLimits } from "../../src/vm/operations/set-limits.js";
import { startScopeArgv, vmScopeName } from "../../src/limits/systemd-scope.js";
import { limitsPatch } from "../../src/cli/limits-command.js";
import { limitSeries } from "../../src/metrics/limit-metrics.js";
import { ValidationFailed } from "../../src/errors.js";

const fieldsOf = (input: Record<string, unknown>): string[] => {
  const r = vmCreateSchema.safeParse({ name: "web-1", ...input });
  return r.success ? [] : r.error.issues.map((i) => i.path.join("."));
};

t.test("the schema: bounds, and each refusal names its field", async (t) => {
  t.same(fieldsOf({ limits: { cpu: { maxPercent: 25, weight: 200 }, memory: { hardMiB: 1024 }, pids: 256 } }), []);
  t.same(fieldsOf({ limits: { cpu: { maxPercent: 0 } } }), ["limits.cpu.maxPercent"]);
  t.same(fieldsOf({ limits: { cpu: { weight: 10_001 } } }), ["limits.cpu.weight"]);
  t.same(fieldsOf({ limits: { pids: 4 } }), ["limits.pids"]);
  t.same(fieldsOf({ limits: { disk: { bps: 1 << 20, writeBps: 1 << 20 } } }), ["limits.disk.writeBps"], "a total beside a write limit");
  t.same(fieldsOf({ limits: { disk: { burstBps: 1 << 21 } } }), ["limits.disk.burstBps"], "a burst without a limit");
  t.same(fieldsOf({ limits: { disk: { writeBps: 1 << 21, burstBps: 1 << 20 } } }), ["limits.disk.burstBps"], "a burst under its limit");
  t.same(fieldsOf({ limits: { disk: { writeBps: 100 } } }), ["limits.disk.writeBps"]);
  t.same(fieldsOf({ limits: { network: { burstKiB: 64 } } }), ["limits.network.burstKiB"]);
  t.same(fieldsOf({ limits: { network: { egressKbps: 1_000, nonsense: 1 } } }), ["limits.network"], "unknown fields refused");
  t.same(fieldsOf({ memoryMiB: 512, limits: { memory: { hardMiB: 512 } } }), ["limits.memory.hardMiB"], "qemu needs memory of its own");
  t.same(fieldsOf({ memoryMiB: 512, limits: { memory: { hardMiB: 576 } } }), []);
});

t.test("a merge patch: a value replaces, null removes, absent stays; the result is checked whole", async (t) => {
  const current = { cpu: { maxPercent: 50, weight: 200 }, disk: { writeBps: 1 << 20 }, pids: 100 };
  const patch = limitsPatchSchema.parse({ cpu: { maxPercent: null }, disk: { writeBps: 2 << 20 }, pids: null, memory: { hardMiB: 2048 } });
  t.same(mergeLimits(current, patch), { cpu: { weight: 200 }, disk: { writeBps: 2 << 20 }, memory: { hardMiB: 2048 } });
  t.same(mergeLimits(current, limitsPatchSchema.parse({ cpu: null, disk: { writeBps: null } })), { pids: 100 }, "an emptied group goes");
  t.throws(() => limitsPatchSchema.parse({ cpu: { quota: 1 } }), "unknown fields refused");
  const err = (() => {
    try {
      mergedLimits(current, limitsPatchSchema.parse({ disk: { bps: 1 << 20 } }), 512);
    } catch (e) {
      return e;
    }
  })();
  t.ok(err instanceof ValidationFailed);
  t.equal((err as ValidationFailed).fields.field, "disk.writeBps", "the patch's own field, beside the one already set");
  try {
    mergedLimits(undefined, limitsPatchSchema.parse({ memory: { hardMiB: 100 } }), 512);
    t.fail("a memory cap under memoryMiB + 64 is refused");
  } catch (e) {
    t.equal((e as ValidationFailed).fields.field, "memory.hardMiB");
  }
});

t.test("cgroup v2 files", async (t) => {
  t.same(cgroupWrites({ cpu: { weight: 300, maxPercent: 25 }, memory: { hardMiB: 1024 }, pids: 200 }, 2), [
    { controller: "cpu", file: "cpu.weight", value: "300" },
    { controller: "cpu", file: "cpu.max", value: "25000 100000" },
    { controller: "memory", file: "memory.max", value: String(1024 * 1024 * 1024) },
    { controller: "pids", file: "pids.max", value: "200" },
  ]);
  t.same(cgroupWrites(undefined, 2).map((w) => w.value), ["100", "max 100000", "max", "max"], "no limits: every file back to its no-limit value");
  t.same(limitsFromCgroup({ "cpu.weight": "300\n", "cpu.max": "25000 100000\n", "memory.max": "1073741824\n", "pids.max": "200\n" }, 2), {
    cpu: { weight: 300, maxPercent: 25 },
    memory: { hardMiB: 1024 },
    pids: 200,
  });
  t.same(limitsFromCgroup({ "cpu.weight": "100", "cpu.max": "max 100000", "memory.max": "max", "pids.max": "max" }, 2), {});
});

t.test("cgroup v1 files", async (t) => {
  t.same(cgroupWrites({ cpu: { weight: 50, maxPercent: 150 }, memory: { hardMiB: 640 }, pids: 64 }, 1), [
    { controller: "cpu", file: "cpu.shares", value: "512" },
    { controller: "cpu", file: "cpu.cfs_period_us", value: "100000" },
    { controller: "cpu", file: "cpu.cfs_quota_us", value: "150000" },
    { controller: "memory", file: "memory.limit_in_bytes", value: String(640 * 1024 * 1024) },
    { controller: "pids", file: "pids.max", value: "64" },
  ]);
  t.same(cgroupWrites(undefined, 1).map((w) => w.value), ["1024", "100000", "-1", "-1", "max"]);
  // What v1 shows for "no limit" (not the -1 written).
  t.same(limitsFromCgroup({ "cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1", "memory.limit_in_bytes": "9223372036854771712", "pids.max": "max" }, 1), {});
  t.same(limitsFromCgroup({ "cpu.shares": "512", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "150000", "memory.limit_in_bytes": "671088640", "pids.max": "64" }, 1), {
    cpu: { weight: 50, maxPercent: 150 },
    memory: { hardMiB: 640 },
    pids: 64,
  });
  for (const w of [1, 7, 100, 333, 10_000]) t.equal(sharesToWeight(weightToShares(w)), w, `weight ${w} survives v1's shares`);
});

const HYBRID = [
  "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
  "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
  "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct",
  "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
  "38 31 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids",
  "40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
].join("\n");

t.test("the host's layout: hybrid is v1; a unified tree with the controllers is v2", async (t) => {
  const hybrid = chooseCgroupLayout(parseCgroupMounts(HYBRID), () => ["hugetlb"]);
  t.equal(hybrid?.version, 1, "the unified mount without cpu and memory does not count");
  t.same(hybrid?.mounts.memory, { mountPoint: "/sys/fs/cgroup/memory", root: "/" });
  const unified = chooseCgroupLayout(parseCgroupMounts("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate"), () => ["cpuset", "cpu", "io", "memory", "pids"]);
  t.equal(unified?.version, 2);
  t.equal(chooseCgroupLayout([], () => []), undefined, "none: limits cannot be applied");
  t.same(parseProcCgroup("9:name=systemd:/\n4:memory:/process_api/5b\n1:cpu,cpuacct:/\n8:pids:/x\n0::/\n"), { v2: "/", v1: { memory: "/process_api/5b", cpu: "/", pids: "/x" } });
});

t.test("the daemon-owned parent: below the daemon on v1, beside it on v2", async (t) => {
  t.same(parentPaths({ version: 1 }, { cpu: "/", memory: "/process_api/5b", pids: "/" }), { cpu: "/vmhostd", memory: "/process_api/5b/vmhostd", pids: "/vmhostd" });
  t.same(parentPaths({ version: 2 }, { cpu: "/daemons/vmhostd.d", memory: "/daemons/vmhostd.d", pids: "/daemons/vmhostd.d" }).cpu, "/daemons/vmhostd");
  t.same(parentPaths({ version: 2 }, { cpu: "/", memory: "/", pids: "/" }).cpu, "/vmhostd");
  t.match(vmCgroupLeaf("web-1", "/run/vmhostd/vms/web-1"), /^web-1-[0-9a-f]{8}$/);
  t.not(vmCgroupLeaf("web-1", "/run/a/vms/web-1"), vmCgroupLeaf("web-1", "/run/b/vms/web-1"), "two daemons' VMs of one name differ");
});

t.test("the systemd scope: one StartTransientUnit call, delegated, with the pid", async (t) => {
  const argv = startScopeArgv(vmScopeName("web-1-0a1b2c3d"), 4242);
  t.same(argv.slice(0, 8), ["call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))", "vmhostd-web-1-0a1b2c3d.scope", "fail"]);
  t.same(argv.slice(8, 13), ["6", "PIDs", "au", "1", "4242"]);
  t.ok(argv.join(" ").includes("Delegate b true"));
});

t.test("the throttle group: every member on a change, only the set ones at start, read back", async (t) => {
  const d = { writeBps: 4 << 20, readIops: 500, burstBps: 8 << 20, burstSeconds: 3 };
  const all = throttleLimits(d);
  t.equal(Object.keys(all).length, 18, "six buckets, each with its max and max-length: qemu keeps a member left out");
  t.equal(all["bps-write"], 4 << 20);
  t.equal(all["bps-write-max"], 8 << 20);
  t.equal(all["bps-write-max-length"], 3);
  t.equal(all["bps-total"], 0);
  t.equal(all["iops-read"], 500);
  t.equal(all["iops-read-max-length"], 1, "no iops burst: length 1, as qemu requires");
  t.same(throttleLimitsSet(d), { "bps-write": 4 << 20, "bps-write-max": 8 << 20, "bps-write-max-length": 3, "iops-read": 500 });
  t.same(throttleLimitsSet(undefined), {});
  t.same(throttleSetCommand({ writeBps: 1 << 20 }), { command: "qom-set", args: { path: "/objects/throttle0", property: "limits", value: throttleLimits({ writeBps: 1 << 20 }) } });
  t.same(diskLimitsFromThrottle({ ...all, "iops-size": 0 } as never), d, "read back as written");
  t.equal(diskLimitsFromThrottle(throttleLimits(undefined)), undefined);
});

t.test("tc: tbf to the guest; from the guest a redirect to an ifb shaped the same way", async (t) => {
  const tap = "vmh0a1b2c3d";
  t.equal(ifbName(tap), "vmi0a1b2c3d");
  t.same(tapShapingCommands(tap, { egressKbps: 8000, ingressKbps: 4000 }, false).map((c) => c.argv.join(" ")), [
    "tc qdisc replace dev vmh0a1b2c3d root tbf rate 8000kbit burst 32768 latency 50ms",
    "ip link add vmi0a1b2c3d type ifb",
    "ip link set vmi0a1b2c3d up",
    "tc qdisc replace dev vmi0a1b2c3d root tbf rate 4000kbit burst 32768 latency 50ms",
    "tc qdisc replace dev vmh0a1b2c3d handle ffff: ingress",
    "tc filter replace dev vmh0a1b2c3d parent ffff: protocol all prio 1 handle 800::1 u32 match u32 0 0 action mirred egress redirect dev vmi0a1b2c3d",
  ]);
  t.same(tapShapingCommands(tap, undefined, true).map((c) => [c.argv.join(" "), c.absentOk]), [
    ["tc qdisc del dev vmh0a1b2c3d root", true],
    ["tc qdisc del dev vmh0a1b2c3d ingress", true],
    ["ip link del vmi0a1b2c3d", true],
  ], "no limits: each piece removed; one already gone is no error");
  t.same(tapShapingCommands(tap, { egressKbps: 100_000, burstKiB: 256 }, false)[0]!.argv.slice(-5), ["100000kbit", "burst", String(256 * 1024), "latency", "50ms"]);
  t.equal(burstBytes(1_000_000, undefined), 2_500_000, "20 ms of a fast rate");
  t.equal(tbfKbps('[{"kind":"tbf","handle":"8001:","root":true,"options":{"rate":125000,"burst":16384,"lat":50000}},{"kind":"ingress","handle":"ffff:"}]'), 1000);
  t.equal(tbfKbps('[{"kind":"noqueue","root":true}]'), undefined);
});

t.test("vmctl limits: flags to one merge patch, none removes", async (t) => {
  t.same(limitsPatch({ cpuMax: "50", memoryMax: "1024", diskWriteBps: "1048576", netOut: "none", pids: "128" }), {
    cpu: { maxPercent: 50 },
    memory: { hardMiB: 1024 },
    disk: { writeBps: 1048576 },
    network: { egressKbps: null },
    pids: 128,
  });
  t.throws(() => limitsPatch({ cpuMax: "50%" }), /--cpu-max expects a whole number/);
});

t.test("metrics: one series per limit, in base units", async (t) => {
  t.same(limitSeries({ cpu: { maxPercent: 25 }, memory: { hardMiB: 2 }, network: { egressKbps: 8 }, disk: { writeBps: 4096 } }), [
    ["cpu_max_percent", 25],
    ["memory_hard_bytes", 2 * 2 ** 20],
    ["disk_write_bytes_per_second", 4096],
    ["network_egress_bits_per_second", 8000],
  ]);
});

t.test("a stored definition keeps its limits", async (t) => {
  const def = completeDefinition(vmCreateSchema.parse({ name: "web-1", limits: { cpu: { maxPercent: 25 } } }));
  t.same(def.limits, { cpu: { maxPercent: 25 } });
});
