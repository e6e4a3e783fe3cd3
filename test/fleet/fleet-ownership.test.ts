// Fleet mode against a real single-node etcd and real qemu: two daemons (two
// "hosts") define the same VM; the owner key in etcd decides which may run it.
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { consoleAfter, consoleSize, defineGuestVm, killQemusUnder, runVmctl, startDaemon, waitForBoot, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { startEtcd, type TestEtcd } from "../helpers/etcd.js";

const TTL = 5;
const UUID = "5f0c1a9e-7b7d-4f57-9a43-2f6d0c1e7a11";

interface VmBody {
  state: string;
  pid?: number;
  owner?: { host: string; revision: string; since: string; ha: boolean };
}

async function fleetDaemon(etcd: TestEtcd, hostId: string, ttl = TTL): Promise<TestDaemon> {
  return await startDaemon({ args: ["--etcd", etcd.url, "--host-id", hostId, "--lease-ttl", String(ttl), "--etcd-prefix", "/t/"] });
}

async function refusal(d: TestDaemon, method: string, url: string, body?: unknown): Promise<{ status: number; code?: string; owner?: string; detail?: string }> {
  const res = await d.api.request(method, url, body);
  return { status: res.status, ...(JSON.parse(res.body.toString() || "{}") as { code?: string; owner?: string; detail?: string }) };
}

/** What GET /v1/host says of etcd once it says `want`, or after 20 s. */
async function etcdReachable(d: TestDaemon, want: boolean): Promise<boolean> {
  let reachable = !want;
  for (let i = 0; i < 100 && reachable !== want; i++) {
    reachable = (await d.api.json<{ fleet: { etcd: { reachable: boolean } } }>("GET", "/v1/host")).fleet.etcd.reachable;
    if (reachable !== want) await sleep(200);
  }
  return reachable;
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test("one owner per VM: 409 naming the owner, start after stop, takeover after the owner died", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  const a = await fleetDaemon(etcd, "host-a");
  t.teardown(() => a.cleanup());
  const b = await fleetDaemon(etcd, "host-b");
  t.teardown(() => b.cleanup());

  const hostInfo = await a.api.json<{ fleet?: { hostId: string; etcd: { reachable: boolean }; lease?: { id: string } } }>("GET", "/v1/host");
  t.equal(hostInfo.fleet?.hostId, "host-a", "GET /v1/host names the host id");
  t.equal(hostInfo.fleet?.etcd.reachable, true, "and says etcd is reachable");
  t.ok(hostInfo.fleet?.lease?.id, "and shows the lease");

  for (const d of [a, b]) await defineGuestVm(d, "shared", { uuid: UUID });
  const started = await a.api.json<VmBody>("POST", "/v1/vms/shared/start?wait=true");
  t.equal(started.state, "running");
  t.equal(started.owner?.host, "host-a", "the VM view shows its owner");
  t.match(started.owner?.revision, /^\d+$/, "with the key's revision as fencing token");

  const refused = await refusal(b, "POST", "/v1/vms/shared/start?wait=true");
  t.equal(refused.status, 409, "a start on the other host is refused");
  t.equal(refused.code, "VMH_ERR_VM_OWNED_ELSEWHERE");
  t.equal(refused.owner, "host-a", "naming the owner");
  const shownOnB = await b.api.json<VmBody>("GET", "/v1/vms/shared");
  t.equal(shownOnB.state, "stopped");
  t.equal(shownOnB.owner?.host, "host-a", "the other host's view shows the owner too");

  // The registry lists both hosts, with what an orchestrator places VMs by.
  let hosts: { id: string; vms: string[]; cpus: number; pools: unknown[] }[] = [];
  for (let i = 0; i < 50; i++) {
    hosts = (await a.api.json<{ hosts: typeof hosts }>("GET", "/v1/fleet/hosts")).hosts;
    if (hosts.find((h) => h.id === "host-a")?.vms.includes("shared")) break;
    await sleep(200);
  }
  t.same(hosts.map((h) => h.id), ["host-a", "host-b"], "GET /v1/fleet/hosts lists both hosts");
  t.same(hosts.find((h) => h.id === "host-a")?.vms, ["shared"], "with the VMs each runs");
  t.ok(hosts.every((h) => h.cpus > 0 && h.pools.length > 0), "and their CPUs and pools");
  const listed = await runVmctl(b, "hosts");
  t.equal(listed.code, 0, listed.stderr);
  t.match(listed.stdout, /host-a\s.*shared/, "vmctl hosts shows host-a running shared");
  t.match(listed.stdout, /host-b/, "and host-b");

  await a.api.json("POST", "/v1/vms/shared/stop?wait=true");
  const stoppedOnA = await a.api.json<VmBody>("GET", "/v1/vms/shared");
  t.equal(stoppedOnA.owner, undefined, "a stop releases the key");
  const onB = await b.api.json<VmBody>("POST", "/v1/vms/shared/start?wait=true");
  t.equal(onB.state, "running", "after the stop on host-a, host-b starts it");
  t.equal(onB.owner?.host, "host-b");
  await waitForBoot(b, "shared", 1, 120_000);

  // host-b dies (daemon SIGKILLed; its qemu stays). The key of an ordinary VM is not
  // bound to the lease: it outlives host-b's registry entry.
  const pidOnB = onB.pid;
  await b.kill();
  const until = Date.now() + (TTL + 10) * 1000;
  while (Date.now() < until) {
    const ids = (await a.api.json<{ hosts: { id: string }[] }>("GET", "/v1/fleet/hosts")).hosts.map((h) => h.id);
    if (!ids.includes("host-b")) break;
    await sleep(250);
  }
  const ids = (await a.api.json<{ hosts: { id: string }[] }>("GET", "/v1/fleet/hosts")).hosts.map((h) => h.id);
  t.same(ids, ["host-a"], "the dead host's registry entry disappears with its lease");
  await sleep(1000);
  const still = await refusal(a, "POST", "/v1/vms/shared/start?wait=true");
  t.equal(still.status, 409, "past the TTL the other host still cannot start the VM");
  t.equal(still.owner, "host-b");
  t.ok(alive(pidOnB), "(host-b's qemu still runs: nothing fenced an ordinary VM)");

  // The operator makes sure host-b is down, then takes the VM over.
  await killQemusUnder(b.root);
  for (let i = 0; i < 50 && alive(pidOnB); i++) await sleep(100);
  t.notOk(alive(pidOnB), "host-b's qemu is gone");
  const noForce = await refusal(a, "POST", "/v1/vms/shared/takeover", {});
  t.equal(noForce.status, 400, "takeover without force is refused");
  const taken = await runVmctl(a, "takeover", "shared", "--force");
  t.equal(taken.code, 0, taken.stderr);
  t.match(taken.stdout, /shared now owned by host-a/);
  t.match(a.log(), /owner key taken over by the operator/, "the takeover is logged");
  const offset = await consoleSize(a, "shared");
  const again = await a.api.json<VmBody>("POST", "/v1/vms/shared/start?wait=true");
  t.equal(again.state, "running", "after takeover the VM starts here");
  t.equal(again.owner?.host, "host-a");
  await consoleAfter(a, "shared", offset, /VMH-READY/, 120_000);

  // host-b's daemon comes back: it does not hold the key and its VM stays down.
  await b.restart();
  const back = await b.api.json<VmBody>("GET", "/v1/vms/shared");
  t.equal(back.state === "running", false, "the restarted old owner does not run the VM");
  t.equal(back.owner?.host, "host-a", "and shows the new owner");

  await a.api.json("POST", "/v1/vms/shared/stop?wait=true");
  await a.api.json("DELETE", "/v1/vms/shared");
});

t.test("a restarted daemon finds its own keys again", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  // The restart must land inside the ha VM's grace period (TTL less the fence's margin and
  // the age of the last renewal): 5.5 s at TTL 10, which a daemon start on a heavily loaded
  // machine has missed; 20 leaves 11 s. This test is about finding keys again, not timing.
  const a = await fleetDaemon(etcd, "host-a", 20);
  t.teardown(() => a.cleanup());
  await defineGuestVm(a, "kept");
  await defineGuestVm(a, "kept-ha", { ha: true });
  const first = await a.api.json<VmBody>("POST", "/v1/vms/kept/start?wait=true");
  const firstHa = await a.api.json<VmBody>("POST", "/v1/vms/kept-ha/start?wait=true");
  t.equal(firstHa.owner?.ha, true, "an ha VM's key is marked ha");
  const lease = (await a.api.json<{ fleet: { lease: { id: string } } }>("GET", "/v1/host")).fleet.lease.id;
  t.equal((await etcd.getKey("/t/vms/kept-ha/owner"))?.lease, lease, "in etcd the ha VM's key is bound to the host lease");
  t.equal((await etcd.getKey("/t/vms/kept/owner"))?.lease, "0", "an ordinary VM's key to none");
  t.equal((await etcd.getKey("/t/vms/kept/owner"))?.modRevision, first.owner?.revision, "the revision shown is the key's");
  await a.kill();
  await a.restart();
  const shown = await a.api.json<VmBody>("GET", "/v1/vms/kept");
  t.equal(shown.pid, first.pid, "the qemu is adopted");
  t.equal(shown.owner?.host, "host-a", "and its owner key is found again");
  t.equal(shown.owner?.revision, first.owner?.revision, "with the same revision");
  const after = (await a.api.json<{ fleet: { lease: { id: string } } }>("GET", "/v1/host")).fleet.lease.id;
  t.equal(after, lease, "a restart within the TTL resumes the same host lease");
  const shownHa = await waitForVm<VmBody>(a, "kept-ha", (v) => v.owner !== undefined, 10_000);
  t.equal(shownHa.pid, firstHa.pid, "the ha VM's qemu is adopted");
  t.equal(shownHa.owner?.revision, firstHa.owner?.revision, "and its key, still bound to that lease, is unchanged");
  for (const n of ["kept", "kept-ha"]) {
    await a.api.json("POST", `/v1/vms/${n}/stop?wait=true`);
    await a.api.json("DELETE", `/v1/vms/${n}`);
  }
});

t.test("etcd unavailable: running VMs keep running, the API says so, a start is 503", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  const a = await fleetDaemon(etcd, "host-a");
  t.teardown(() => a.cleanup());
  await defineGuestVm(a, "running");
  await defineGuestVm(a, "idle");
  const run = await a.api.json<VmBody>("POST", "/v1/vms/running/start?wait=true");
  await waitForBoot(a, "running", 1, 120_000);

  await etcd.stop();
  t.equal(await etcdReachable(a, false), false, "GET /v1/host says etcd is unreachable");
  const refused = await refusal(a, "POST", "/v1/vms/idle/start?wait=true");
  t.equal(refused.status, 503, "a start that needs the owner key is refused");
  t.equal(refused.code, "VMH_ERR_ETCD_UNREACHABLE");
  const idle = await a.api.json<VmBody>("GET", "/v1/vms/idle");
  t.equal(idle.state, "stopped", "and nothing was started");
  await sleep(TTL * 1000 + 1000);
  const kept = await a.api.json<VmBody>("GET", "/v1/vms/running");
  t.equal(kept.state, "running", "the ordinary VM keeps running past the TTL");
  t.equal(kept.pid, run.pid, "the same qemu");

  await etcd.start();
  t.equal(await etcdReachable(a, true), true, "etcd back: reachable again");
  const started = await a.api.json<VmBody>("POST", "/v1/vms/idle/start?wait=true");
  t.equal(started.owner?.host, "host-a", "and starts take the key again");
  for (const n of ["running", "idle"]) await a.api.json("POST", `/v1/vms/${n}/stop?wait=true`);
});

t.test("without --etcd nothing of the fleet is there", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const host = await d.api.json<Record<string, unknown>>("GET", "/v1/host");
  t.equal(host.fleet, undefined, "GET /v1/host has no fleet part");
  const hosts = await refusal(d, "GET", "/v1/fleet/hosts");
  t.equal(hosts.status, 409);
  t.equal(hosts.code, "VMH_ERR_NOT_IN_FLEET");
  await defineGuestVm(d, "solo");
  const vm = await d.api.json<VmBody>("POST", "/v1/vms/solo/start?wait=true");
  t.equal(vm.state, "running", "a start needs no etcd");
  t.equal(vm.owner, undefined, "and shows no owner");
  t.equal((await refusal(d, "POST", "/v1/vms/solo/takeover", { force: true })).code, "VMH_ERR_NOT_IN_FLEET");
  await d.api.json("POST", "/v1/vms/solo/stop?wait=true");
});
