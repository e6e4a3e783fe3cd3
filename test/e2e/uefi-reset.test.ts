// A reset is a reset, never a stop: under OVMF, a reset through the API and a
// guest that reboots itself (as installers do) both leave the VM running in the
// same qemu, with a new boot. And what a UEFI definition needs from the host.
import t from "tap";
import path from "node:path";
import { copyFile } from "node:fs/promises";
import type { VmJson } from "../../src/cli/vm-format.js";
import { GUEST_CMDLINE } from "../helpers/guest.js";
import { defineGuestVm, installGuest, startDaemon, waitForBoot, waitForConsole } from "../helpers/daemon.js";
import { ensureInstaller, parseInstallerMarkers } from "../helpers/installer.js";

/** OVMF under TCG: 10-20 s to the kernel; generous for a loaded machine. */
const BOOT_TIMEOUT_MS = 180_000;

t.test("UEFI VMs: an API reset and a guest's own reboot keep the VM running", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const g = await installGuest(d);
  const { initrd } = await ensureInstaller();
  await copyFile(initrd, path.join(d.stateDir, "images", "system-initrd.img"));

  await defineGuestVm(d, "efi", { firmware: "uefi", memoryMiB: 256 });
  // vmh.reboot=1: every boot of this guest resets the machine itself at once.
  await d.api.json("POST", "/v1/vms", {
    name: "efi-reboot",
    memoryMiB: 256,
    firmware: "uefi",
    boot: { kernel: g.kernel, initrd: "system-initrd.img", cmdline: `${GUEST_CMDLINE} rdinit=/vmh-installer vmh.reboot=1` },
  });
  let started = Date.now();
  const [first] = await Promise.all([
    d.api.json<VmJson>("POST", "/v1/vms/efi/start"),
    d.api.json<VmJson>("POST", "/v1/vms/efi-reboot/start"),
  ]);
  const boot1 = await waitForBoot(d, "efi", 1, BOOT_TIMEOUT_MS);
  t.comment(`OVMF direct kernel boot to the guest's ready marker: ${Date.now() - started} ms`);

  started = Date.now();
  const reset = await d.api.json<VmJson>("POST", "/v1/vms/efi/reset");
  t.equal(reset.state, "running", "reset answers running");
  const boot2 = await waitForBoot(d, "efi", 2, BOOT_TIMEOUT_MS);
  t.comment(`reset to the guest's ready marker: ${Date.now() - started} ms`);
  t.not(boot2.bootId, boot1.bootId, "a new boot");
  const after = await d.api.json<VmJson>("GET", "/v1/vms/efi");
  t.equal(after.state, "running", "still running");
  t.equal(after.pid, first.pid, "in the same qemu");
  t.notOk(after.lastExit, "no run ended");

  // Three boots: two resets the guest made itself.
  await waitForConsole(d, "efi-reboot", /(VMH-REBOOTING[^\n]*\n[\s\S]*){2}VMH-BOOT boot_id=\S+\r?\n/, BOOT_TIMEOUT_MS);
  const rebooted = await d.api.json<VmJson>("GET", "/v1/vms/efi-reboot");
  const m = parseInstallerMarkers((await d.api.request("GET", "/v1/vms/efi-reboot/console/log")).body.toString());
  t.ok(m.bootIds.length >= 3 && new Set(m.bootIds).size === m.bootIds.length, `the guest rebooted itself into new boots (${m.bootIds.length})`);
  t.equal(rebooted.state, "running", "a guest's reboot leaves the VM running");
  t.notOk(rebooted.lastExit, "no run ended");
  t.ok(d.log().includes('"event":"RESET"'), "qemu reported the resets as RESET events");
  await d.api.json("POST", "/v1/vms/efi-reboot/stop");
  await d.api.json("POST", "/v1/vms/efi/stop");
});

t.test("what UEFI needs: q35, and OVMF on the host", async (t) => {
  const d = await startDaemon({ args: ["--ovmf-code", "/nonexistent/OVMF_CODE_4M.fd"] });
  t.teardown(() => d.cleanup());
  let res = await d.api.request("POST", "/v1/vms", { name: "efi-pc", machine: "pc", firmware: "uefi" });
  let p = JSON.parse(res.body.toString()) as { code: string; field?: string; detail: string };
  t.equal(res.status, 400, "uefi on pc → 400");
  t.equal(p.field, "firmware");
  res = await d.api.request("POST", "/v1/vms", { name: "efi", firmware: "uefi" });
  p = JSON.parse(res.body.toString()) as { code: string; field?: string; detail: string };
  t.equal(p.code, "VMH_ERR_FIRMWARE", "no OVMF: refused with its own code");
  t.match(p.detail, /OVMF_CODE_4M\.fd not found/, "naming the missing file");
  t.equal((await d.api.request("GET", "/v1/vms/efi")).status, 404, "and nothing was created");
});
