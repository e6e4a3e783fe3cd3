// qemu ending without being asked: noticed within a second while the daemon
// runs (and the VM's onCrash policy applied), or found and reported after a
// restart when it happened while the daemon was down.
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { defineGuestVm, startDaemon, waitForBoot, waitForVm } from "../helpers/daemon.js";

t.test("a qemu killed while the daemon runs is noticed within 1 s", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "victim");
  const vm = await d.api.json<VmJson>("POST", "/v1/vms/victim/start");
  process.kill(vm.pid!, "SIGKILL");
  const killedAt = Date.now();
  const crashed = await waitForVm<VmJson>(d, "victim", (v) => v.state === "crashed", 5_000);
  const ms = Date.now() - killedAt;
  t.ok(ms < 1000, `reported crashed after ${ms} ms`);
  t.equal(crashed.lastExit?.reason, "crashed");
  t.equal(crashed.lastExit?.signal, "SIGKILL", "the signal is recorded");
  t.notOk(crashed.pid);
  // onCrash "stop" (the default): it stays crashed until the operator acts.
  await sleep(1500);
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/victim")).state, "crashed", "onCrash stop leaves it crashed");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/victim/start")).state, "running", "a crashed VM can be started");
});

t.test("onCrash restart brings the guest back after a back-off", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "phoenix", { onCrash: "restart" });
  const vm = await d.api.json<VmJson>("POST", "/v1/vms/phoenix/start");
  const first = await waitForBoot(d, "phoenix", 1);
  process.kill(vm.pid!, "SIGKILL");
  await waitForVm<VmJson>(d, "phoenix", (v) => v.state === "crashed", 2_000);
  const again = await waitForVm<VmJson>(d, "phoenix", (v) => v.state === "running", 15_000);
  t.not(again.pid, vm.pid, "a new qemu");
  const second = await waitForBoot(d, "phoenix", 2);
  t.not(second.bootId, first.bootId, "the guest booted again");
});

t.test("a qemu killed while the daemon is down is reported after restart", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "lost");
  await defineGuestVm(d, "kept");
  const lost = await d.api.json<VmJson>("POST", "/v1/vms/lost/start");
  const kept = await d.api.json<VmJson>("POST", "/v1/vms/kept/start");
  await d.kill();
  process.kill(lost.pid!, "SIGTERM");
  await sleep(500);
  await d.restart();
  const l = await waitForVm<VmJson>(d, "lost", (v) => v.state !== "unknown");
  t.equal(l.state, "crashed");
  t.match(l.lastExit?.detail, /ended while the daemon was not running: .*terminating on signal 15/, "what qemu said of its end is reported");
  t.equal((await waitForVm<VmJson>(d, "kept", (v) => v.state !== "unknown")).pid, kept.pid, "the other VM is adopted");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/lost/start")).state, "running", "and the lost one can be started again");
});
