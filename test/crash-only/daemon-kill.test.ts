// The daemon is not the VM: SIGKILL the daemon while guests run, and they keep
// running untouched; a new daemon adopts them with their live state and can
// control them. A SIGINT to the daemon's terminal never reaches a guest either.
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { consoleFromDisk, defineGuestVm, startDaemon, waitForBoot, waitForConsole, waitForVm } from "../helpers/daemon.js";

t.test("SIGKILL of the daemon leaves every guest running; restart adopts them", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const names = ["ka", "kb", "kc"];
  for (const n of names) await defineGuestVm(d, n);
  await Promise.all(names.map((n) => d.api.json("POST", `/v1/vms/${n}/start`)));
  const before: Record<string, { bootId: string; pid: number }> = {};
  for (const n of names) {
    const m = await waitForBoot(d, n, 1);
    before[n] = { bootId: m.bootId!, pid: (await d.api.json<VmJson>("GET", `/v1/vms/${n}`)).pid! };
  }
  await waitForConsole(d, "ka", /VMH-TICK 2 /);
  await d.api.json("POST", "/v1/vms/kc/pause");

  await d.kill();
  const atKill = (await consoleFromDisk(d, "ka")).ticks.at(-1)!;
  await sleep(2500);
  const whileDown = await consoleFromDisk(d, "ka");
  t.ok(whileDown.ticks.at(-1)! > atKill, `the guest kept ticking with no daemon (${atKill} → ${whileDown.ticks.at(-1)})`);
  for (const n of names) t.doesNotThrow(() => process.kill(before[n]!.pid, 0), `qemu of ${n} is still alive`);

  await d.restart();
  const ka = await waitForVm<VmJson>(d, "ka", (v) => v.state === "running");
  t.equal(ka.pid, before.ka!.pid, "the same qemu process was adopted");
  t.equal((await waitForVm<VmJson>(d, "kc", (v) => v.state !== "unknown")).state, "paused", "the paused VM is adopted paused");
  for (const n of names) {
    const m = await consoleFromDisk(d, n);
    t.equal(m.bootId, before[n]!.bootId, `${n}: same boot id, never rebooted`);
    t.same(m.ticks, m.ticks.slice().sort((a, b) => a - b), `${n}: the counter never went back`);
  }

  // Fully controllable after adoption: the process is no longer the daemon's child.
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/kc/resume")).state, "running");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/kb/pause")).state, "paused");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/kb/resume")).state, "running");
  const down = await d.api.json<VmJson>("POST", "/v1/vms/ka/shutdown", { timeoutSec: 60 });
  t.equal(down.state, "stopped");
  t.equal(down.lastExit?.reason, "guest-shutdown", "an adopted guest shuts down cleanly");
  const stopped = await d.api.json<VmJson>("POST", "/v1/vms/kb/stop");
  t.equal(stopped.lastExit?.reason, "host-stop");
  t.equal((await waitForVm<VmJson>(d, "kc", (v) => v.state === "running")).pid, before.kc!.pid);
});

t.test("a SIGINT to the daemon's process group does not reach the guests", async (t) => {
  const d = await startDaemon({ detached: true });
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "si");
  const vm = await d.api.json<VmJson>("POST", "/v1/vms/si/start");
  await waitForBoot(d, "si", 1);
  // As a Ctrl-C in the daemon's terminal would: the whole foreground process group.
  process.kill(-d.proc.pid!, "SIGINT");
  await new Promise((r) => d.proc.once("exit", r));
  t.equal(d.proc.exitCode, 0, "the daemon exits cleanly on SIGINT");
  t.doesNotThrow(() => process.kill(vm.pid!, 0), "qemu is still alive");
  await d.restart();
  t.equal((await waitForVm<VmJson>(d, "si", (v) => v.state === "running")).pid, vm.pid, "and is adopted again");
});
