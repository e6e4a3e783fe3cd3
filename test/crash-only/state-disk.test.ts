// The daemon's own disk failing is the daemon's problem, never the guests': with
// the state directory full, guests keep running across a daemon restart, a stop
// and a shutdown's hard stop still end their qemu (recording what they can), new
// operations are refused with 507 VMH_ERR_STATE_DISK_FULL, and once space is
// freed a restarted daemon sees every VM as it really is.
import { execFileSync } from "node:child_process";
import { rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { consoleFromDisk, defineGuestVm, startDaemon, waitForBoot, waitForVm } from "../helpers/daemon.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test("a full state disk: guests keep running, stop and shutdown still stop, new operations get 507", async (t) => {
  const d = await startDaemon({ stateTmpfsMiB: 48 });
  t.teardown(() => d.cleanup());
  for (const vm of ["full-a", "full-b", "full-c", "full-d"]) await defineGuestVm(d, vm);
  const a = await d.api.json<VmJson>("POST", "/v1/vms/full-a/start");
  const b = await d.api.json<VmJson>("POST", "/v1/vms/full-b/start");
  const dd = await d.api.json<VmJson>("POST", "/v1/vms/full-d/start");
  const bootA = await waitForBoot(d, "full-a", 1);
  // A paused guest cannot answer the ACPI power button: its shutdown must reach the hard stop.
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/full-d/pause")).state, "paused");

  // Fill every byte that is left.
  const filler = path.join(d.stateDir, "filler");
  try {
    execFileSync("dd", ["if=/dev/zero", `of=${filler}`, "bs=1M"], { stdio: "ignore" });
  } catch {
    // dd stops with "No space left on device": that is the point
  }

  const host = await d.api.json<{ state: { writable: boolean; error?: string } }>("GET", "/v1/host");
  t.equal(host.state.writable, false, "the host view says state cannot be recorded");
  t.match(host.state.error, /cannot record state: .*ENOSPC/);

  const start = await d.api.request("POST", "/v1/vms/full-c/start");
  t.equal(start.status, 507, "a start is refused");
  t.match(JSON.parse(start.body.toString()), { code: "VMH_ERR_STATE_DISK_FULL", errno: "ENOSPC", detail: /full/ });
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/full-c")).state, "stopped", "and nothing was started");
  const create = await d.api.request("POST", "/v1/vms", { name: "full-e", memoryMiB: 64, disks: [{ name: "root", sizeGiB: 1 }] });
  t.equal(create.status, 507, "a create is refused");
  t.match(JSON.parse(create.body.toString()), { code: "VMH_ERR_STATE_DISK_FULL" });
  t.equal((await d.api.request("GET", "/v1/vms/full-e")).status, 404, "and no VM was made");

  const stopped = await d.api.request("POST", "/v1/vms/full-b/stop");
  t.equal(stopped.status, 200, "stop still works on a full disk");
  t.equal((JSON.parse(stopped.body.toString()) as VmJson).state, "stopped", "the API says stopped");
  t.notOk(alive(b.pid!), "and its qemu is gone");
  t.match(JSON.parse(stopped.body.toString()), { stateWriteError: /ENOSPC/ }, "the VM says what it could not record");

  const down = await d.api.request("POST", "/v1/vms/full-d/shutdown", { timeoutSec: 2 });
  t.equal(down.status, 200, "a shutdown whose guest does not answer reaches its hard stop");
  t.match(JSON.parse(down.body.toString()), { state: "stopped", lastExit: { reason: "shutdown-timeout" } });
  t.notOk(alive(dd.pid!), "and its qemu is gone");

  const va0 = await d.api.json<VmJson>("GET", "/v1/vms/full-a");
  t.equal(va0.state, "running", "the guest left alone keeps running");
  t.equal(va0.pid, a.pid);

  // A daemon restarted on the full disk finds everything as it is.
  await d.kill();
  await d.restart();
  const va = await waitForVm<VmJson>(d, "full-a", (v) => v.state === "running");
  t.equal(va.pid, a.pid, "guest a kept running through the restart");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/full-a/pause")).state, "paused", "guests stay controllable");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/full-a/resume")).state, "running");
  const host2 = await d.api.json<{ state: { writable: boolean } }>("GET", "/v1/host");
  t.equal(host2.state.writable, false, "still says so after the restart");
  for (const vm of ["full-b", "full-c", "full-d"]) {
    t.equal((await waitForVm<VmJson>(d, vm, (v) => v.state !== "unknown")).state, "stopped", `${vm} is stopped after the restart`);
  }

  await rm(filler);

  // Space freed: after a restart every VM is what it is, and new operations work again.
  await d.kill();
  await d.restart();
  const va2 = await waitForVm<VmJson>(d, "full-a", (v) => v.state === "running");
  t.equal(va2.pid, a.pid, "guest a is still the same qemu");
  for (const vm of ["full-b", "full-c", "full-d"]) {
    const v = await waitForVm<VmJson>(d, vm, (x) => x.state !== "unknown");
    t.equal(v.state, "stopped", `${vm} is stopped`);
    t.notOk(v.lastExit?.reason === "crashed", `${vm} is not taken for a crash`);
  }
  await sleep(1500);
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/full-b")).state, "stopped", "nothing restarted a stopped VM");
  t.equal((await d.api.json<{ state: { writable: boolean } }>("GET", "/v1/host")).state.writable, true, "state can be recorded again");
  const c = await d.api.json<VmJson>("POST", "/v1/vms/full-c/start");
  t.equal(c.state, "running", "a start works again");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/full-c/stop")).state, "stopped");
  t.equal((await consoleFromDisk(d, "full-a")).bootId, bootA.bootId, "guest a never rebooted");
});
