// The fence's watchdog and its refusals, against real etcd and qemu. A watchdog
// stand-in (a file the fence pets, watched by the test, which kills the ha qemus
// when petting stops for its timeout) replaces /dev/watchdog, which would reboot
// the test machine. Freezing the fence process: petting stops and the stand-in
// acts, and the daemon says the fence is unresponsive. Freezing the daemon: the
// fence kills the ha qemu, started through a symlink (`--qemu`), whose name says
// nothing of qemu. A watchdog that cannot be opened: the fence refuses to arm,
// in its log, the daemon's API, the fleet registry and a metric. A wrapper that
// forks qemu (so the pid the daemon holds is not qemu's) is refused at start.
import { chmod, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import { startDaemon, waitForBoot, type TestDaemon } from "../helpers/daemon.js";
import { startEtcd } from "../helpers/etcd.js";
import { defineHa, killLeftovers, untilFence } from "../helpers/fence-watch.js";
import { sharedGuestPool } from "../helpers/migration.js";
import { startWatchdogStandIn } from "../helpers/watchdog-standin.js";

const TTL = 5;
const WATCHDOG_S = 2;

async function qemuGoneWithin(d: TestDaemon, vm: string, ms: number): Promise<number | undefined> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (!(await findQemuProcesses(d.runDir)).some((p) => p.name === vm)) return Date.now();
    await sleep(50);
  }
  return undefined;
}

t.test("watchdog stand-in, a frozen fence, a frozen daemon with a symlinked qemu, and a watchdog that cannot be opened", { timeout: 150_000 }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  const pool = await sharedGuestPool(t);
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-wd-"));
  await chmod(dir, 0o755);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const kvm = path.join(dir, "kvm");
  await symlink("/usr/bin/qemu-system-x86_64", kvm);
  const device = path.join(dir, "watchdog");
  let uuid = "";
  const args = (id: string) => ["--etcd", etcd.url, "--host-id", id, "--lease-ttl", String(TTL), "--pool", `images=${pool}`];
  // The stand-in exists before the daemon, as a device would.
  let standIn = await startWatchdogStandIn(device, WATCHDOG_S * 1000, "/nonexistent", () => [uuid]);
  const [a, b] = await Promise.all([
    startDaemon({ args: [...args("wd-a"), "--qemu", kvm, "--watchdog", device, "--watchdog-timeout", String(WATCHDOG_S)] }),
    startDaemon({ args: [...args("wd-b"), "--watchdog", path.join(dir, "no-such-watchdog")] }),
  ]);
  await standIn.stop();
  standIn = await startWatchdogStandIn(device, WATCHDOG_S * 1000, a.runDir, () => [uuid]);
  t.teardown(() => standIn.stop());
  t.teardown(async () => (await killLeftovers(a), await a.cleanup()));
  t.teardown(() => b.cleanup());
  const fencePid = Number((await readFile(path.join(a.runDir, "fence", "fence.pid"), "utf8")).trim());
  t.teardown(() => {
    for (const pid of [fencePid, a.proc.pid!]) {
      try {
        process.kill(pid, "SIGCONT");
      } catch {
        // gone
      }
    }
  });

  await Promise.all([defineHa(a, "wd"), defineHa(b, "nowd")]);
  uuid = (await a.api.json<{ definition: { uuid: string } }>("GET", "/v1/vms/wd")).definition.uuid;

  await t.test("a watchdog that cannot be opened: the fence refuses to arm, and says so everywhere", async (t) => {
    const f = await untilFence(b, (f) => f.mode === "refused");
    t.equal(f.armed, false, "GET /v1/host: not armed");
    t.match(f.refusals, [{ what: "watchdog", why: /ENOENT/ }], "naming the watchdog and why");
    t.match(f.watchdog, { open: false, error: /no-such-watchdog/ });
    const hosts = await a.api.json<{ hosts: { id: string; fence?: { armed: boolean; mode: string } }[] }>("GET", "/v1/fleet/hosts");
    const entry = await (async () => {
      for (let i = 0; i < 40; i++) {
        const h = (await b.api.json<typeof hosts>("GET", "/v1/fleet/hosts")).hosts.find((x) => x.id === "wd-b");
        if (h?.fence?.mode === "refused") return h;
        await sleep(250);
      }
      return hosts.hosts.find((x) => x.id === "wd-b");
    })();
    t.match(entry?.fence, { armed: false, mode: "refused" }, "GET /v1/fleet/hosts shows it to the whole fleet");
    const metrics = (await b.api.request("GET", "/metrics")).body.toString();
    t.match(metrics, /^vmhostd_fence_armed 0$/m, "the metric says not armed");
    t.match(metrics, /^vmhostd_fence_refusals 1$/m);
    t.match(await readFile(path.join(b.runDir, "fence", "fence.log"), "utf8"), /refusing to arm/, "and the fence's log");
  });

  await a.api.json("POST", "/v1/vms/wd/start");
  await waitForBoot(a, "wd", 1);
  const armed = await untilFence(a, (f) => f.mode === "armed" && (f.protects ?? []).includes("wd"));
  t.match(armed.watchdog, { open: true }, "host-a's fence holds the watchdog open and arms");
  t.match((await a.api.request("GET", "/metrics")).body.toString(), /^vmhostd_fence_armed 1$/m, "the metric says armed");
  const before = standIn.pets;
  await sleep(1000);
  t.ok(standIn.pets > before + 3, `it pets the watchdog while the lease is valid (${standIn.pets - before} pets in 1 s)`);

  await t.test("the fence process frozen: petting stops and the watchdog acts", async (t) => {
    const frozenAt = Date.now();
    process.kill(fencePid, "SIGSTOP");
    const gone = await qemuGoneWithin(a, "wd", WATCHDOG_S * 1000 + 3000);
    t.ok(standIn.bitAt, `the stand-in saw petting stop and bit ${standIn.bitAt! - frozenAt} ms after the freeze`);
    t.ok(gone, `the ha qemu is gone ${gone! - frozenAt} ms after the freeze`);
    t.ok(standIn.killed.length >= 1);
    const f = await untilFence(a, (f) => f.mode === "unresponsive", 6_000);
    t.equal(f.armed, false, "the daemon says its fence is unresponsive, not armed");
    process.kill(fencePid, "SIGCONT");
    await untilFence(a, (f) => f.mode !== "unresponsive");
  });

  await t.test("the daemon frozen: the fence kills the qemu started through a symlink", async (t) => {
    await a.api.json("POST", "/v1/vms/wd/start");
    await waitForBoot(a, "wd", 1);
    await untilFence(a, (f) => f.mode === "armed" && (f.protects ?? []).includes("wd"));
    const argv0 = (await findQemuProcesses(a.runDir)).find((p) => p.name === "wd");
    t.ok(argv0, "the qemu is running");
    t.notMatch((await readFile(`/proc/${argv0!.pid}/cmdline`, "utf8")).split("\0")[0], /qemu-system/, "its argv[0] says nothing of qemu");
    const bitesBefore = standIn.bitAt;
    const frozenAt = Date.now();
    a.proc.kill("SIGSTOP");
    const gone = await qemuGoneWithin(a, "wd", TTL * 1000 + 2000);
    t.ok(gone && gone - frozenAt < TTL * 1000, `the fence killed it ${gone! - frozenAt} ms after the freeze, within the TTL`);
    t.match(await readFile(path.join(a.runDir, "fence", "fenced.jsonl"), "utf8"), /"vm":"wd".*not renewed in time/, "recorded by the fence");
    t.equal(standIn.bitAt, bitesBefore, "the watchdog did not need to act: the fence did its work");
    a.proc.kill("SIGCONT");
    const until = Date.now() + 10_000;
    let vm: { lastExit?: { reason: string; detail?: string }; state: string } = { state: "" };
    while (Date.now() < until) {
      vm = await a.api.json("GET", "/v1/vms/wd");
      if (vm.state !== "running") break;
      await sleep(100);
    }
    t.equal(vm.lastExit?.reason, "fenced", `the thawed daemon records the exit as fenced (${vm.lastExit?.detail})`);
  });

  await t.test("an orderly stop of the fence writes the magic close", async (t) => {
    t.equal(standIn.closes, 0, "no magic close so far");
    process.kill(fencePid, "SIGTERM");
    for (let i = 0; i < 40 && standIn.closes === 0; i++) await sleep(50);
    t.equal(standIn.closes, 1, "'V' written before the device was closed");
    // The daemon starts a new fence process within 500 ms; it opens the device again and pets it.
    const pets = standIn.pets;
    for (let i = 0; i < 60 && standIn.pets <= pets; i++) await sleep(50);
    t.ok(standIn.pets > pets, "the fence the daemon started again pets it");
  });

  await t.test("a wrapper that forks qemu instead of exec'ing it is refused at start: no kill could reach its qemu", async (t) => {
    const forking = path.join(dir, "forking-qemu");
    await writeFile(forking, '#!/bin/sh\n/usr/bin/qemu-system-x86_64 "$@"\n', { mode: 0o755 });
    await b.kill();
    await b.restart(["--qemu", forking]);
    const r = await b.api.request("POST", "/v1/vms/nowd/start");
    const problem = JSON.parse(r.body.toString()) as { code?: string; detail?: string };
    t.equal(r.status, 502);
    t.equal(problem.code, "VMH_ERR_QEMU_FAILED");
    t.match(problem.detail, /a wrapper must exec qemu/, "naming why");
    t.same(await findQemuProcesses(b.runDir), [], "neither the wrapper nor the qemu it forked is left running");
  });
});
