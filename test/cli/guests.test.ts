// vmctl autostart and shutdown-all, what vmhostd-guests.service runs at host boot
// and shutdown: all VMs at once, one line each, a non-zero exit if any failed.
import { copyFile, rm } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { installGuest, runVmctl, startDaemon, waitForBoot, type TestDaemon } from "../helpers/daemon.js";

const vmctl = runVmctl;

const lines = (s: string): string[] => s.trim().split("\n").sort();
const state = async (d: TestDaemon, name: string): Promise<VmJson> => d.api.json<VmJson>("GET", `/v1/vms/${name}`);

t.test("autostart starts the autostart VMs; shutdown-all powers every VM off", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const guest = await installGuest(d);
  const define = (name: string, autostart: boolean, kernel = guest.kernel) =>
    d.api.json("POST", "/v1/vms", { name, memoryMiB: 128, autostart, boot: { kernel, initrd: guest.initrd, cmdline: guest.cmdline } });
  await define("auto1", true);
  await define("auto2", true);
  await define("manual", false);
  // An autostart VM whose kernel has gone since it was defined: its start fails, the others' must not.
  await copyFile(path.join(d.stateDir, "images", guest.kernel), path.join(d.stateDir, "images", "gone"));
  await define("broken", true, "gone");
  await rm(path.join(d.stateDir, "images", "gone"));

  const started = await vmctl(d, "autostart");
  t.equal(started.code, 1, "non-zero: one VM failed");
  const [a1, a2, broken] = lines(started.stdout);
  t.equal(a1, "auto1: running");
  t.equal(a2, "auto2: running");
  t.match(broken, /^broken: FAILED: .+ \(VMH_ERR_FILE_NOT_FOUND\)$/);
  t.equal(lines(started.stdout).length, 3, "one line per autostart VM");
  t.equal((await state(d, "manual")).state, "stopped", "a VM without autostart stays stopped");
  t.equal((await state(d, "broken")).state, "stopped");

  await d.api.json("DELETE", "/v1/vms/broken");
  const again = await vmctl(d, "autostart");
  t.equal(again.code, 0, again.stderr);
  t.same(lines(again.stdout), ["auto1: already running, left as is", "auto2: already running, left as is"], "running VMs are left alone");

  // A guest still booting ignores the ACPI button: wait until both are up.
  await Promise.all([waitForBoot(d, "auto1", 1), waitForBoot(d, "auto2", 1)]);
  const down = await vmctl(d, "shutdown-all", "--timeout", "60");
  t.equal(down.code, 0, down.stderr);
  t.same(lines(down.stdout), ["auto1: stopped (guest-shutdown)", "auto2: stopped (guest-shutdown)"]);
  for (const name of ["auto1", "auto2"]) {
    const vm = await state(d, name);
    t.equal(vm.state, "stopped", `${name} stopped`);
    t.equal(vm.lastExit?.reason, "guest-shutdown", `${name} powered itself off`);
  }
  t.equal((await state(d, "manual")).lastExit, undefined, "the stopped VM was not touched");

  const none = await vmctl(d, "shutdown-all");
  t.equal(none.code, 0);
  t.equal(none.stdout.trim(), "no VM is running");
  const json = await vmctl(d, "--json", "shutdown-all");
  t.same(JSON.parse(json.stdout), [], "--json: the outcomes as an array");
});
