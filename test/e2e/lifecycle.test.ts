// The whole life of a VM through the HTTP API, against real qemu booting the
// real test guest: what an operator would see at each step.
import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { parseGuestMarkers } from "../helpers/guest.js";
import { installGuest, startDaemon, waitForConsole, type TestDaemon } from "../helpers/daemon.js";
import type { VmJson } from "../../src/cli/vm-format.js";

const GiB = 1024 ** 3;

t.test("create → start → pause → resume → shutdown → start → stop → delete", async (t) => {
  const d: TestDaemon = await startDaemon();
  t.teardown(() => d.cleanup());
  const guest = await installGuest(d);

  const created = await d.api.json<VmJson>("POST", "/v1/vms", {
    name: "life",
    memoryMiB: 256,
    boot: { kernel: guest.kernel, initrd: guest.initrd, cmdline: guest.cmdline },
    disks: [{ name: "data", sizeGiB: 1 }],
    nics: [{ network: { type: "user" } }],
  });
  t.equal(created.state, "stopped");
  t.match(created.uuid, /^[0-9a-f-]{36}$/);
  const disk = await stat(path.join(d.stateDir, "vms/life/disks/data.qcow2"));
  t.ok(disk.isFile(), "the disk was created inside the VM's directory");

  const started = await d.api.json<VmJson>("POST", "/v1/vms/life/start");
  t.equal(started.state, "running");
  t.ok(started.pid && started.pid > 0, "running VM has a pid");
  t.ok(started.argv?.includes("-S"), "argv is shown");
  // What an operator debugging the VM reads: the exact process, when it started, from which qemu.
  const shown = await d.api.json<VmJson & { startedAt?: string; qemuVersion?: string }>("GET", "/v1/vms/life");
  t.equal(shown.pid, started.pid, "GET shows the same pid");
  t.match(shown.qemuVersion, /^\d+\.\d+/, "and the qemu version");
  t.ok(shown.startedAt && Date.now() - Date.parse(shown.startedAt) < 120_000, "and when it started");

  const boot = parseGuestMarkers(await waitForConsole(d, "life", /VMH-TICK 3 /));
  t.ok(boot.bootId, "guest printed its boot id");
  t.equal(boot.disks.vda, 1 * GiB, "the guest sees its virtio disk at the declared size");

  const paused = await d.api.json<VmJson>("POST", "/v1/vms/life/pause");
  t.equal(paused.state, "paused");
  const atPause = parseGuestMarkers(await consoleText(d)).ticks.at(-1)!;
  await sleep(2000);
  const whilePaused = parseGuestMarkers(await consoleText(d)).ticks.at(-1)!;
  t.ok(whilePaused <= atPause + 1, `counter stopped while paused (${atPause} → ${whilePaused})`);
  t.equal((await d.api.json<VmJson>("GET", "/v1/vms/life")).state, "paused", "GET reads the paused state from qemu");

  const resumed = await d.api.json<VmJson>("POST", "/v1/vms/life/resume");
  t.equal(resumed.state, "running");
  await waitForConsole(d, "life", new RegExp(`VMH-TICK ${whilePaused + 3} `));
  const after = parseGuestMarkers(await consoleText(d));
  t.equal(after.bootId, boot.bootId, "same boot: the guest was not restarted");

  const down = await d.api.json<VmJson>("POST", "/v1/vms/life/shutdown", { timeoutSec: 60 });
  t.equal(down.state, "stopped");
  t.equal(down.lastExit?.reason, "guest-shutdown", "the guest powered itself off");
  t.ok(parseGuestMarkers(await consoleText(d)).poweroff, "guest saw the power button");
  t.notOk(down.pid, "no pid once stopped");

  const again = await d.api.json<VmJson>("POST", "/v1/vms/life/start");
  t.equal(again.state, "running");
  const stopped = await d.api.json<VmJson>("POST", "/v1/vms/life/stop");
  t.equal(stopped.state, "stopped");
  t.equal(stopped.lastExit?.reason, "host-stop");

  const del = await d.api.request("DELETE", "/v1/vms/life");
  t.equal(del.status, 204);
  t.same(await readdir(path.join(d.stateDir, "vms")), [], "nothing left of the VM on disk");
  const gone = await d.api.request("GET", "/v1/vms/life");
  t.equal(gone.status, 404);
});

async function consoleText(d: TestDaemon): Promise<string> {
  return (await d.api.request("GET", "/v1/vms/life/console/log")).body.toString("utf8");
}
