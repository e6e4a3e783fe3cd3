// Host maintenance in a fleet: three daemons and a real etcd on loopback. Host A
// runs three guests; `vmctl evacuate` moves them live to B and C (chosen by the
// room each has: C keeps 1536 MiB more for itself), two at a time, and the guests
// keep their boot (same boot id, ticks going on). Meanwhile and afterwards A
// refuses a start and an incoming migration with 409 VMH_ERR_HOST_IN_MAINTENANCE;
// `vmctl resume-host` lifts it.
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { JobView } from "../../../src/jobs/job-registry.js";
import { placeVms, type EvacuationItem } from "../../../src/host/maintenance/evacuation-plan.js";
import { findQemuProcesses } from "../../../src/qemu/qemu-process.js";
import { problem, runVmctl, startDaemon, waitForBoot, type TestDaemon } from "../../helpers/daemon.js";
import { startEtcd } from "../../helpers/etcd.js";
import { ensureGuest } from "../../helpers/guest.js";
import { allStarted, sharedGuestPool, waitJob } from "../../helpers/migration.js";
import { eventProblems, heldEvents } from "../../helpers/event-check.js";

const TOKEN = "evacuation-test-token-0123456789";
/** Below the ephemeral range, so no outgoing connection can hold one when a daemon starts. */
const PORT = 18770;
const VMS = ["vm1", "vm2", "vm3"];
/** Large enough that the hosts' reserves decide the placement far above the noise of MemAvailable. */
const VM_MIB = 1024;

/**
 * Waits until the VM's console on `d` shows a tick of boot `bootId` past `afterTick`:
 * the same boot, still running. The destination's log starts mid-boot (no VMH-BOOT
 * line), so the tick lines are read on their own.
 */
async function tickOfSameBoot(d: TestDaemon, vm: string, bootId: string, afterTick: number): Promise<number | undefined> {
  const tick = new RegExp(`^VMH-TICK (\\d+) boot_id=${bootId}\\r?$`, "gm");
  for (let i = 0; i < 100; i++) {
    const text = (await d.api.request("GET", `/v1/vms/${vm}/console/log`)).body.toString();
    const last = Math.max(0, ...[...text.matchAll(tick)].map((m) => Number(m[1])));
    if (last > afterTick) return last;
    await sleep(200);
  }
  return undefined;
}

t.test("evacuate a fleet host: 3 VMs to 2 hosts by room, 2 at a time; maintenance refuses starts and arrivals; resume", { timeout: 240_000 }, async (t) => {
  const shared = await sharedGuestPool(t);
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  const guest = await ensureGuest();
  const ports = { a: PORT, b: PORT + 1, c: PORT + 2 };
  const url = (p: number) => `http://127.0.0.1:${p}`;
  const daemon = async (id: keyof typeof ports, extra: string[] = []) => {
    const d = await startDaemon({
      args: ["--listen", `127.0.0.1:${ports[id]}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, "--etcd", etcd.url, "--host-id", `host-${id}`, "--lease-ttl", "5", ...extra],
    });
    t.teardown(() => d.cleanup());
    return d;
  };
  const [a, b, c] = await allStarted([daemon("a"), daemon("b", ["--host-reserved-mib", "1024"]), daemon("c", ["--host-reserved-mib", String(1024 + 1536)])]);
  const define = (d: TestDaemon, name: string) =>
    d.api.json("POST", "/v1/vms", { name, memoryMiB: VM_MIB, boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline } });

  for (const name of VMS) {
    await define(a, name);
    await a.api.json("POST", `/v1/vms/${name}/start?wait=true`);
  }
  const boots = Object.fromEntries(await Promise.all(VMS.map(async (n) => [n, await waitForBoot(a, n, 1, 120_000)] as const)));
  // Every host's registry entry is in etcd (each is written at start and refreshed every TTL/2).
  for (let i = 0; i < 50; i++) {
    const { hosts } = await a.api.json<{ hosts: { id: string }[] }>("GET", "/v1/fleet/hosts");
    if (hosts.length === 3) break;
    await sleep(200);
  }

  const evacuated = await runVmctl(a, "evacuate");
  t.equal(evacuated.code, 0, `vmctl evacuate: ${evacuated.stderr}`);
  for (const name of VMS) {
    t.match(evacuated.stderr, new RegExp(`^${name}: migrating → host-[bc]$`, "m"), `${name}: its start is shown`);
    t.match(evacuated.stdout, new RegExp(`^${name}\\s+done\\s+host-[bc]\\s`, "m"), `${name}: its end is in the table`);
  }
  t.match(evacuated.stdout, /evacuation succeeded: 3 moved, 0 failed, 0 skipped in \d+ ms/);

  const hostView = await a.api.json<{ maintenance: boolean; maintenanceSince?: string; evacuation?: { job: string; state: string; done: number } }>("GET", "/v1/host");
  t.equal(hostView.maintenance, true, "GET /v1/host: in maintenance");
  t.ok(hostView.maintenanceSince, "since when");
  t.equal(hostView.evacuation?.state, "succeeded");
  t.equal(hostView.evacuation?.done, 3);
  const job = await waitJob(a, hostView.evacuation!.job, (j) => j.state !== "running");
  t.equal(job.kind, "evacuate");
  t.equal(job.state, "succeeded", `job: ${JSON.stringify(job.error)}`);
  const items = (job.items ?? []) as unknown as EvacuationItem[];
  t.same(items.map((i) => i.state), ["done", "done", "done"], "every VM's line ends done");
  t.ok(items.every((i) => i.job), "each through its own migration job");
  t.comment(`evacuation of 3 VMs, parallel 2: ${String(job.result?.durationMs)} ms`);

  // The choice follows the room each host reported, counting the VMs already sent to it.
  const recorded = job.result!.destinations as { id: string; url: string; roomMiB: number }[];
  const room = Object.fromEntries(recorded.map((d) => [d.id, d.roomMiB]));
  t.same(Object.keys(room).sort(), ["host-b", "host-c"], "destinations: the other live hosts");
  t.ok(Math.abs(room["host-b"]! - room["host-c"]! - 1536) < 900, `host-c reported about 1536 MiB less room (${room["host-b"]} vs ${room["host-c"]})`);
  const expected = placeVms(VMS.map((name) => ({ name, memoryMiB: VM_MIB })), recorded);
  const chosen = Object.fromEntries(items.map((i) => [i.vm, i.destination]));
  t.same(chosen, Object.fromEntries(expected.map((i) => [i.vm, i.destination])), "each VM went where the most room was left");
  t.same(new Set(Object.values(chosen)), new Set(["host-b", "host-c"]), "both hosts took VMs");

  const hosts = { "host-b": b, "host-c": c } as Record<string, TestDaemon>;
  for (const name of VMS) {
    const there = hosts[chosen[name]!]!;
    const vm = await there.api.json<{ state: string; owner?: { host: string } }>("GET", `/v1/vms/${name}`);
    t.equal(vm.state, "running", `${name} runs on ${chosen[name]}`);
    t.equal(vm.owner?.host, chosen[name], `${name}: the owner key moved along`);
    const lastTick = boots[name]!.ticks.at(-1) ?? 0;
    t.ok(await tickOfSameBoot(there, name, boots[name]!.bootId!, lastTick), `${name}: the same boot (${boots[name]!.bootId}) ticks on there`);
  }
  t.same((await findQemuProcesses(a.runDir)).map((p) => p.name), [], "no qemu left on host-a");

  // In maintenance: no start, no arrival.
  await define(a, "late");
  t.same(await problem(a, "POST", "/v1/vms/late/start?wait=true"), { status: 409, code: "VMH_ERR_HOST_IN_MAINTENANCE" }, "a start is refused");
  const back = await b.api.json<JobView>("POST", `/v1/vms/${items.find((i) => i.destination === "host-b")!.vm}/migrate`, { destination: url(ports.a), storage: "shared" });
  const backEnd = await waitJob(b, back.id, (j) => j.state !== "running", 60_000);
  t.equal(backEnd.state, "failed", "a migration to the host in maintenance fails");
  t.match(backEnd.error?.detail, /VMH_ERR_HOST_IN_MAINTENANCE/, "refused by the destination's maintenance");
  t.equal((await b.api.json<{ state: string }>("GET", `/v1/vms/${back.vm}`)).state, "running", "and the guest runs on where it was");
  t.same((await findQemuProcesses(a.runDir)).map((p) => p.name), [], "nothing was prepared on host-a");
  const again = await a.api.request("POST", "/v1/host/evacuate", {});
  t.equal(again.status, 202, "evacuating again (nothing left) is answered with a job");

  const resumed = await runVmctl(a, "resume-host");
  t.equal(resumed.code, 0, resumed.stderr);
  t.match(resumed.stdout, /maintenance ended/);
  t.equal((await a.api.json<{ maintenance: boolean }>("GET", "/v1/host")).maintenance, false, "GET /v1/host: in service");
  const late = await a.api.json<{ state: string }>("POST", "/v1/vms/late/start?wait=true");
  t.equal(late.state, "running", "a start is taken again");

  // A VM that cannot move is listed with why, and the evacuation says it is incomplete.
  const unknownHost = await a.api.request("POST", "/v1/host/evacuate", { to: ["host-x"] });
  t.equal(unknownHost.status, 400, "an unknown destination is refused");
  t.equal((JSON.parse(unknownHost.body.toString()) as { field?: string }).field, "to.0", "naming it");
  t.equal((await a.api.json<{ maintenance: boolean }>("GET", "/v1/host")).maintenance, false, "before entering maintenance");
  await a.api.json("POST", "/v1/vms/late/pause");
  const stuck = await runVmctl(a, "evacuate", "--to", "host-b");
  t.equal(stuck.code, 1, "vmctl evacuate exits 1 when a VM stays");
  t.match(stuck.stdout, /^late\s+skipped\s+-\s+paused: only a running guest is live-migrated/m, "the paused VM is listed with why");
  t.match(stuck.stdout, /evacuation failed: 0 moved, 0 failed, 1 skipped/);
  const incomplete = await waitJob(a, (await a.api.json<{ evacuation: { job: string } }>("GET", "/v1/host")).evacuation.job, (j) => j.state !== "running");
  t.equal(incomplete.error?.code, "VMH_ERR_EVACUATION_INCOMPLETE");
  t.match(incomplete.error?.detail, /late \(paused/);
  t.equal((await a.api.json<{ state: string }>("GET", "/v1/vms/late")).state, "paused", "and it was left as it was");
  t.equal((await runVmctl(a, "resume-host")).code, 0);
  await a.api.json("POST", "/v1/vms/late/stop?wait=true");

  const events = (await heldEvents(a)).filter((e) => e.sseEvent.startsWith("host.") && e.sseEvent !== "host.orphan-qemu");
  t.same(events.flatMap(eventProblems), [], "the host events match the catalogue");
  const types = new Set(events.map((e) => e.sseEvent));
  for (const type of ["host.maintenance-started", "host.evacuation-progress", "host.evacuation-finished", "host.maintenance-ended"]) t.ok(types.has(type), `${type} was published`);
  for (const name of VMS) await hosts[chosen[name]!]!.api.json("POST", `/v1/vms/${name}/stop?wait=true`);
});
