// The owner key follows the guest: a guest that powers itself off (with the
// daemon up, or while it is down) and a VM deleted while the daemon was down give
// their keys back, so another host can start the VM without a forced takeover.
// A crash keeps the key. Real etcd, real qemu; the power button is pressed
// through qemu's second monitor, from outside the daemon, as the guest's own
// choice would look to it.
import { rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { QmpClient } from "../../src/qmp/qmp-client.js";
import { defineGuestVm, problem, startDaemon, waitForBoot, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { startEtcd, type TestEtcd } from "../helpers/etcd.js";

interface VmBody {
  state: string;
  pid?: number;
  qmpDebugSocket?: string;
  lastExit?: { reason: string };
  owner?: { host: string };
}

async function fleetDaemon(etcd: TestEtcd, hostId: string): Promise<TestDaemon> {
  return await startDaemon({ args: ["--etcd", etcd.url, "--host-id", hostId, "--lease-ttl", "5", "--etcd-prefix", "/o/"] });
}

/** Presses the VM's ACPI power button on qemu's second monitor; the test guest then powers itself off. */
async function pressPowerButton(socket: string): Promise<void> {
  const qmp = await QmpClient.connect(socket, { connectTimeoutMs: 10_000 });
  try {
    await qmp.execute("system_powerdown", undefined, { timeoutMs: 10_000 });
  } finally {
    await qmp.close();
  }
}

/** Who etcd names as the owner, once it is `want` (undefined: no key), or what it is after 15 s. */
async function ownerOnceIs(etcd: TestEtcd, vm: string, want: string | undefined): Promise<string | undefined> {
  let host: string | undefined;
  for (let i = 0; i < 75; i++) {
    const key = await etcd.getKey(`/o/vms/${vm}/owner`);
    host = key ? (JSON.parse(key.value) as { host: string }).host : undefined;
    if (host === want) break;
    await sleep(200);
  }
  return host;
}

async function startAndBoot(d: TestDaemon, vm: string): Promise<VmBody> {
  const started = await d.api.json<VmBody>("POST", `/v1/vms/${vm}/start?wait=true`);
  await waitForBoot(d, vm, 1, 120_000);
  return started;
}

t.test("the owner key follows the guest", async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  const a = await fleetDaemon(etcd, "host-a");
  t.teardown(() => a.cleanup());
  const b = await fleetDaemon(etcd, "host-b");
  t.teardown(() => b.cleanup());
  const names = ["off-up", "off-down", "gone", "crash"];
  for (const n of names) for (const d of [a, b]) await defineGuestVm(d, n, { uuid: `00000000-0000-4000-8000-00000000000${names.indexOf(n)}` });
  const started: Record<string, VmBody> = {};
  await Promise.all(names.map(async (n) => (started[n] = await startAndBoot(a, n))));
  for (const n of names) t.equal(await ownerOnceIs(etcd, n, "host-a"), "host-a", `${n}: host-a holds the key while it runs`);

  // 1. The guest powers itself off while the daemon runs.
  await pressPowerButton(started["off-up"]!.qmpDebugSocket!);
  const offUp = await waitForVm<VmBody>(a, "off-up", (v) => v.state === "stopped", 60_000);
  t.equal(offUp.lastExit?.reason, "guest-shutdown", "the guest powered itself off");
  t.equal(await ownerOnceIs(etcd, "off-up", undefined), undefined, "and its key was given back");
  t.equal((await b.api.json<VmBody>("POST", "/v1/vms/off-up/start?wait=true")).owner?.host, "host-b", "another host starts it without a takeover");
  await b.api.json("POST", "/v1/vms/off-up/stop?wait=true");

  // 2. While the daemon is down: one guest powers off, one VM is deleted by hand, one qemu crashes.
  await a.kill();
  await pressPowerButton(started["off-down"]!.qmpDebugSocket!);
  process.kill(started.gone!.pid!, "SIGKILL");
  process.kill(started.crash!.pid!, "SIGKILL");
  await sleep(1000);
  await rm(path.join(a.stateDir, "vms", "gone"), { recursive: true, force: true });
  await a.restart();

  const offDown = await waitForVm<VmBody>(a, "off-down", (v) => v.state === "stopped", 60_000);
  t.equal(offDown.lastExit?.reason, "guest-shutdown", "a guest that powered off while the daemon was down is found stopped");
  t.equal(await ownerOnceIs(etcd, "off-down", undefined), undefined, "and its key is given back at adoption");
  t.equal(await ownerOnceIs(etcd, "gone", undefined), undefined, "the key of a VM deleted while the daemon was down is given back");
  t.equal((await problem(a, "GET", "/v1/vms/gone")).status, 404, "that VM is not listed");
  for (const n of ["off-down", "gone"]) {
    t.equal((await b.api.json<VmBody>("POST", `/v1/vms/${n}/start?wait=true`)).owner?.host, "host-b", `${n}: another host starts it without a takeover`);
    await b.api.json("POST", `/v1/vms/${n}/stop?wait=true`);
  }

  const crashed = await waitForVm<VmBody>(a, "crash", (v) => v.state !== "unknown", 30_000);
  t.equal(crashed.state, "crashed", "a qemu killed while the daemon was down is a crash");
  await sleep(2000);
  t.equal(await ownerOnceIs(etcd, "crash", "host-a"), "host-a", "a crashed VM keeps its key (its crash policy may restart it here)");
  t.equal((await problem(b, "POST", "/v1/vms/crash/start?wait=true")).status, 409, "so another host is refused");
});
