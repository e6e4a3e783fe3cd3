// A revoked host lease (an operator's `etcdctl lease revoke`, here the etcd
// client's) deletes the owner keys of its ha VMs at once. The owner's daemon
// hears of it (a watch on its registry entry, which goes with the lease), writes
// "fence now", and the fence process kills the ha qemu before the other host's
// start can succeed; both hosts' processes are sampled every 50 ms and never show
// two copies. The new lease the daemon is then granted does not disarm the fence;
// a VM whose key is taken under it runs unharmed. Host-a runs qemu through a shell
// wrapper (`--qemu`): the fence recognises its qemu by what was recorded, not by name.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { eventProblems, heldEvents } from "../helpers/event-check.js";
import { startDaemon, waitForBoot } from "../helpers/daemon.js";
import { startEtcd } from "../helpers/etcd.js";
import { defineHa, fenceOf, killLeftovers, startWhenAllowed, untilFence, watchCopies } from "../helpers/fence-watch.js";
import { sharedGuestPool } from "../helpers/migration.js";

const TTL = 5;

/** A shell script that execs the real qemu: a test fixture only (the daemon never runs a shell). */
async function qemuWrapper(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-wrap-"));
  await chmod(dir, 0o755);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "site-qemu");
  await writeFile(file, '#!/bin/sh\nexec /usr/bin/qemu-system-x86_64 "$@"\n');
  await chmod(file, 0o755);
  return file;
}

async function revokeLease(url: string, id: string): Promise<void> {
  const { Etcd3 } = await import("etcd3");
  const client = new Etcd3({ hosts: url });
  try {
    await client.leaseClient.leaseRevoke({ ID: id });
  } finally {
    client.close();
  }
}

t.test("a revoked lease: the ha qemu dies before the other host's start succeeds, and a new lease does not disarm the fence", { timeout: 150_000 }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  const pool = await sharedGuestPool(t);
  const wrapper = await qemuWrapper(t);
  const args = (id: string) => ["--etcd", etcd.url, "--host-id", id, "--lease-ttl", String(TTL), "--pool", `images=${pool}`];
  const [a, b] = await Promise.all([startDaemon({ args: [...args("host-a"), "--qemu", wrapper] }), startDaemon({ args: args("host-b") })]);
  t.teardown(async () => (await killLeftovers(a), await a.cleanup()));
  t.teardown(() => b.cleanup());
  await Promise.all([defineHa(a, "rv"), defineHa(b, "rv"), defineHa(a, "rv2")]);

  const started = await a.api.json<{ pid: number }>("POST", "/v1/vms/rv/start");
  await waitForBoot(a, "rv", 1);
  const armed = await untilFence(a, (f) => f.mode === "armed" && (f.protects ?? []).includes("rv"));
  t.ok(armed.armed, "host-a's fence confirms the wrapped qemu by its recorded identity and arms");
  const oldLease = (await fenceOf(a)).lease!.id;

  const w = watchCopies("rv", { a, b });
  const revokedAt = Date.now();
  await revokeLease(etcd.url, oldLease);
  const onB = await startWhenAllowed(b, "rv", 30_000, 20);
  await sleep(1000);
  await w.stop();
  const killedAt = w.seen.a?.present === false ? w.seen.a.changedAt : undefined;
  t.ok(killedAt, "host-a's qemu was killed");
  t.ok(killedAt! < onB.at, `before host-b's start succeeded (killed ${killedAt! - revokedAt} ms after the revoke; host-b started ${onB.at - revokedAt} ms after it)`);
  t.equal(w.most, 1, "never more than one qemu for the VM across both hosts");
  const noticedAt = a
    .log()
    .split("\n")
    .flatMap((l) => (l.includes("host lease gone") ? [(JSON.parse(l) as { time: number }).time] : []))[0];
  t.comment(`figures: revoke → host-a's daemon knows ${noticedAt! - revokedAt} ms; → qemu dead ${killedAt! - revokedAt} ms (50 ms sampling); → host-b's start answered ${onB.at - revokedAt} ms`);

  const vm = await a.api.json<{ state: string; pid?: number; lastExit?: { reason: string; detail?: string } }>("GET", "/v1/vms/rv");
  t.equal(vm.lastExit?.reason, "fenced", `host-a records the exit as fenced (${vm.lastExit?.detail})`);
  t.equal(vm.state, "stopped", "and does not restart it as it would a crash");
  const events = await heldEvents(a);
  const fenced = events.filter((e) => e.sseEvent === "vm.fenced" && (e.body as { vm?: string }).vm === "rv");
  t.equal(fenced.length, 1, "one vm.fenced event was published");
  t.same(fenced.flatMap(eventProblems), [], "as the catalogue declares it");
  t.match((fenced[0]?.body as { data: { pid: number } }).data.pid, started.pid);

  // The daemon is granted a new lease; that alone must not vouch for anything. A VM whose
  // key is taken under the new lease is protected again, and not killed.
  const back = await untilFence(a, (f, lease) => lease !== undefined && lease !== oldLease && f.mode !== "fencing");
  t.not(back.leaseId, oldLease, `the fence follows the new lease (${back.mode})`);
  const rv2 = await a.api.json<{ pid: number }>("POST", "/v1/vms/rv2/start");
  await waitForBoot(a, "rv2", 1);
  const rearmed = await untilFence(a, (f) => f.mode === "armed" && (f.protects ?? []).includes("rv2"));
  t.ok(rearmed.armed, "the fence disarmed its loss and arms for the VM keyed under the new lease");
  await sleep(TTL * 1000);
  const still = await a.api.json<{ pid: number; state: string }>("GET", "/v1/vms/rv2");
  t.equal(still.state, "running", "the new ha VM runs on past a whole TTL");
  t.equal(still.pid, rv2.pid, "the same qemu");
  await Promise.all([a.api.json("POST", "/v1/vms/rv2/stop"), b.api.json("POST", "/v1/vms/rv/stop")]);
});
