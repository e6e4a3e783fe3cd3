// The daemon's own disk failing is the daemon's problem, never the guests': with
// the state directory full, guests keep running across a daemon restart, and the
// API says why it cannot record state.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { consoleFromDisk, defineGuestVm, startDaemon, waitForBoot, waitForVm } from "../helpers/daemon.js";

t.test("a full state disk: guests keep running and the API says why", async (t) => {
  const d = await startDaemon({ stateTmpfsMiB: 48 });
  t.teardown(() => d.cleanup());
  await defineGuestVm(d, "full-a");
  await defineGuestVm(d, "full-b");
  await defineGuestVm(d, "full-c");
  const a = await d.api.json<VmJson>("POST", "/v1/vms/full-a/start");
  const b = await d.api.json<VmJson>("POST", "/v1/vms/full-b/start");
  const bootA = await waitForBoot(d, "full-a", 1);

  // Fill every byte that is left.
  try {
    execFileSync("dd", ["if=/dev/zero", `of=${path.join(d.stateDir, "filler")}`, "bs=1M"], { stdio: "ignore" });
  } catch {
    // dd stops with "No space left on device": that is the point
  }

  const host = await d.api.json<{ state: { writable: boolean; error?: string } }>("GET", "/v1/host");
  t.equal(host.state.writable, false, "the host view says state cannot be recorded");
  t.match(host.state.error, /cannot record state: .*ENOSPC/);

  const start = await d.api.request("POST", "/v1/vms/full-c/start");
  t.equal(start.status, 507, "an operation that must record state is refused");
  t.match(JSON.parse(start.body.toString()), { code: "VMH_ERR_STATE_WRITE", detail: /ENOSPC/ });
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/full-c")).state, "stopped", "and nothing was started");

  await d.kill();
  await d.restart();
  const va = await waitForVm<VmJson>(d, "full-a", (v) => v.state === "running");
  const vb = await waitForVm<VmJson>(d, "full-b", (v) => v.state === "running");
  t.equal(va.pid, a.pid, "guest a kept running through the restart");
  t.equal(vb.pid, b.pid, "guest b kept running through the restart");
  t.equal((await d.api.json<VmJson>("POST", "/v1/vms/full-b/pause")).state, "paused", "guests stay controllable");
  const host2 = await d.api.json<{ state: { writable: boolean } }>("GET", "/v1/host");
  t.equal(host2.state.writable, false, "still says so after the restart");
  await sleep(1000);
  t.equal((await consoleFromDisk(d, "full-a")).bootId, bootA.bootId, "guest a never rebooted");
});
