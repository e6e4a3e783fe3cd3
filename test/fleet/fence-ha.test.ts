// `ha` VMs and fencing, against a real etcd and real qemu: when the owning host
// can no longer renew its lease (its daemon frozen by SIGSTOP, or its link to
// etcd cut), the fence process kills the ha qemu before etcd lets the owner key
// go, and only then can the other host start the VM. Processes are checked every
// 50 ms throughout: the VM never runs on both hosts. A daemon restarted within
// the grace period fences nothing.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t, { type Test } from "tap";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import { startDaemon, waitForBoot, type TestDaemon } from "../helpers/daemon.js";
import { defineHa, startWhenAllowed, watchCopies } from "../helpers/fence-watch.js";
import { startEtcd } from "../helpers/etcd.js";
import { sharedGuestPool } from "../helpers/migration.js";
import { makeTwoHosts } from "../helpers/two-hosts.js";

const TTL = 5;
/**
 * The restart case's TTL, the default: at 5 a restart has about 2.75 s to land
 * (TTL less the margin and the last renewal's age, docs/fleet.md), which a daemon
 * start on a machine loaded by the rest of the suite has missed.
 */
const RESTART_TTL = 10;

async function fenced(d: TestDaemon): Promise<string> {
  return readFile(path.join(d.runDir, "fence", "fenced.jsonl"), "utf8").catch(() => "");
}

/**
 * Does `cutOff` to host-a (the owner of `vm`), then starts `vm` on host-b as soon as
 * it is let: host-a's qemu must die within the TTL and before host-b's starts,
 * and the two never run at once.
 */
async function fencedThenMoved(t: Test, vm: string, a: TestDaemon, b: TestDaemon, what: string, cutOff: () => void, ttl = TTL): Promise<{ at: number; refusals: string[] }> {
  const w = watchCopies(vm, { a, b });
  const cutAt = Date.now();
  cutOff();
  const onB = await startWhenAllowed(b, vm, 60_000, 250);
  await sleep(1000);
  await w.stop();
  const killedAt = w.seen.a?.present === false ? w.seen.a.changedAt : undefined;
  t.ok(killedAt, "host-a's qemu was killed");
  t.ok(killedAt! - cutAt < ttl * 1000, `within the TTL of the ${what} (${killedAt! - cutAt} ms)`);
  t.ok(killedAt! < onB.at, `before host-b could start the VM (${onB.at - killedAt!} ms later)`);
  t.equal(w.most, 1, "never more than one qemu for the VM across both hosts");
  t.match(await fenced(a), new RegExp(`"vm":"${vm}"`), "the fence process recorded what it killed");
  return onB;
}

t.test("a frozen owner is fenced before the other host may start its ha VM; a quick restart fences nothing", { timeout: 280_000 }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  const pool = await sharedGuestPool(t);
  const args = (id: string) => ["--etcd", etcd.url, "--host-id", id, "--lease-ttl", String(RESTART_TTL), "--pool", `images=${pool}`];
  const a = await startDaemon({ args: args("host-a") });
  t.teardown(() => a.cleanup());
  const b = await startDaemon({ args: args("host-b") });
  t.teardown(() => b.cleanup());
  await defineHa(a, "hv");
  await defineHa(b, "hv");

  // A daemon restart within the grace period: same qemu, same boot, nothing fenced.
  const started = await a.api.json<{ pid: number }>("POST", "/v1/vms/hv/start");
  const boot = await waitForBoot(a, "hv", 1);
  await sleep(RESTART_TTL * 1000);
  t.equal(await fenced(a), "", "nothing is fenced while the lease is renewed");
  await a.kill();
  await a.restart();
  await sleep(RESTART_TTL * 1000 + 1000);
  const after = await a.api.json<{ pid: number; state: string; owner?: { host: string } }>("GET", "/v1/vms/hv");
  t.equal(after.pid, started.pid, "after a restart within the grace period the same qemu runs");
  t.equal(after.state, "running");
  t.equal(after.owner?.host, "host-a", "and host-a still owns it");
  t.equal((await waitForBoot(a, "hv", 1)).bootId, boot.bootId, "the guest never noticed");
  t.equal(await fenced(a), "", "nothing was fenced");

  // Freeze host-a's daemon: its fence process kills the ha qemu, then host-b may start the VM.
  t.teardown(() => void a.proc.kill("SIGCONT"));
  const onB = await fencedThenMoved(t, "hv", a, b, "freeze", () => a.proc.kill("SIGSTOP"), RESTART_TTL);
  t.ok(onB.refusals.includes("VMH_ERR_VM_OWNED_ELSEWHERE"), `host-b was refused while host-a held the key (${onB.refusals.join(", ")})`);
  a.proc.kill("SIGCONT");
  await waitForBoot(b, "hv", 1);
  t.equal((await findQemuProcesses(a.runDir)).filter((p) => p.name === "hv").length, 0, "host-a, thawed, runs no copy");
  await b.api.json("POST", "/v1/vms/hv/stop");
});

t.test("an owner cut off from etcd is fenced before the other host may start its ha VM", { timeout: 280_000 }, async (t) => {
  const hosts = makeTwoHosts();
  t.teardown(() => hosts.cleanup());
  const etcd = await startEtcd({ host: hosts.b.ip, netns: hosts.b.ns });
  t.teardown(() => etcd.cleanup());
  const pool = await sharedGuestPool(t);
  const args = (id: string) => ["--etcd", etcd.url, "--host-id", id, "--lease-ttl", String(TTL), "--pool", `images=${pool}`];
  const a = await startDaemon({ netns: hosts.a.ns, args: args("host-a") });
  t.teardown(() => a.cleanup());
  const b = await startDaemon({ netns: hosts.b.ns, args: args("host-b") });
  t.teardown(() => b.cleanup());
  await defineHa(a, "cut");
  await defineHa(b, "cut");
  await a.api.json("POST", "/v1/vms/cut/start");
  await waitForBoot(a, "cut", 1);

  await fencedThenMoved(t, "cut", a, b, "cut", () => hosts.linkDown());
  const host = await a.api.json<{ fleet?: { etcd: { reachable: boolean } } }>("GET", "/v1/host");
  t.equal(host.fleet?.etcd.reachable, false, "host-a's API says etcd is unreachable");
  hosts.linkUp();
  await waitForBoot(b, "cut", 1);
  await b.api.json("POST", "/v1/vms/cut/stop");
});
