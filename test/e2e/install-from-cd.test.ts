// Installing a VM from an ISO, as an operator would: a VM with the installer CD,
// a blank disk and boot order CD then disk boots the installer, which writes a
// bootable system and a marker line to the disk and powers off; the CD is
// ejected and the VM, started again, boots from its disk, whose system prints the
// marker it finds. Under SeaBIOS and under OVMF, both VMs at once.
import { readFile } from "node:fs/promises";
import path from "node:path";
import t, { type Test } from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { startDaemon, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { installInstallerIso, parseInstallerMarkers } from "../helpers/installer.js";

/** OVMF under TCG takes 10-20 s to reach the boot loader; a loaded test machine more. */
const RUN_TIMEOUT_MS = 240_000;

type Firmware = "bios" | "uefi";
interface CdromJson {
  drive: boolean;
  image: string | null;
  live?: { medium: string | null; trayOpen: boolean };
}

t.test("install from CD onto a blank disk, eject, boot the disk: BIOS and UEFI", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  const iso = await installInstallerIso(d);
  const timings = await Promise.all((["bios", "uefi"] as const).map((fw) => installAndBoot(t, d, iso, fw)));
  for (const [fw, ms] of timings) t.comment(`${fw}: install run ${ms.install} ms, installed-system run ${ms.check} ms`);
});

async function installAndBoot(t: Test, d: TestDaemon, iso: string, fw: Firmware): Promise<[Firmware, Record<string, number>]> {
  const name = `inst-${fw}`;
  const created = await d.api.json<VmJson>("POST", "/v1/vms", {
    name,
    memoryMiB: 256,
    firmware: fw,
    cdrom: { image: iso },
    disks: [{ name: "root", sizeGiB: 1 }],
    boot: { order: ["cdrom", "disk"] },
  });
  t.equal(created.state, "stopped", `${fw}: created`);
  const varsFile = path.join(d.stateDir, "vms", name, "uefi-vars.fd");
  const template = fw === "uefi" ? await readFile("/usr/share/OVMF/OVMF_VARS_4M.fd") : undefined;
  if (template) t.same(await readFile(varsFile), template, "uefi: the VM got its own copy of the 4M VARS template at creation");

  // First run: the installer from the CD, onto the blank disk; it powers off.
  let started = Date.now();
  t.equal((await d.api.json<VmJson>("POST", `/v1/vms/${name}/start`)).state, "running", `${fw}: installer started`);
  const installed = await waitForVm<VmJson>(d, name, (v) => v.state === "stopped", RUN_TIMEOUT_MS);
  const install = Date.now() - started;
  t.equal(installed.lastExit?.reason, "guest-shutdown", `${fw}: the installer powered the VM off`);
  const argv = JSON.parse(await readFile(path.join(d.stateDir, "vms", name, "qemu.argv.json"), "utf8")) as string[];
  const cd = devices(argv).find((x) => x.driver === "ide-cd");
  const disk = devices(argv).find((x) => x.driver === "virtio-blk-pci");
  t.ok(cd && disk && Number(cd.bootindex) < Number(disk.bootindex), `${fw}: the CD comes before the disk in the boot order`);
  if (fw === "uefi") t.ok(argv.some((a) => a.includes("pflash0=fw-code,pflash1=fw-vars")), "uefi: OVMF on the flash devices");
  let m = parseInstallerMarkers(await consoleText(d, name));
  t.same(m.errors, [], `${fw}: the installer reported no error`);
  t.equal(m.installed.length, 1, `${fw}: the installer ran once`);
  const installBoot = m.installed[0];
  t.equal(installBoot, m.bootIds[0], `${fw}: the first boot was the installer's`);
  if (template) t.notSame(await readFile(varsFile), template, "uefi: OVMF wrote to the VM's own variable store");

  // Eject; the drive stays, empty, and the definition says so.
  const ejected = await d.api.json<CdromJson>("DELETE", `/v1/vms/${name}/cdrom`);
  t.same(ejected, { drive: true, image: null }, `${fw}: ejected`);
  t.same((await d.api.json<VmJson>("GET", `/v1/vms/${name}`)).definition.cdrom, {}, `${fw}: the definition keeps an empty drive`);

  // Second run: nothing in the drive, so the firmware boots the disk: the installed system checks it.
  started = Date.now();
  await d.api.json<VmJson>("POST", `/v1/vms/${name}/start`);
  const checked = await waitForVm<VmJson>(d, name, (v) => v.state === "stopped", RUN_TIMEOUT_MS);
  const check = Date.now() - started;
  t.equal(checked.lastExit?.reason, "guest-shutdown", `${fw}: the installed system powered off`);
  m = parseInstallerMarkers(await consoleText(d, name));
  t.same(m.errors, [], `${fw}: the installed system reported no error`);
  t.equal(m.bootIds.length, 2, `${fw}: two boots in all`);
  t.not(m.bootIds[1], installBoot, `${fw}: the second boot is a new one`);
  t.equal(m.installed.length, 1, `${fw}: the installer did not run again`);
  t.same(m.diskMarkers, [`VMH-INSTALLED ${installBoot}`], `${fw}: booted from the disk, which kept the installer's marker`);
  return [fw, { install, check }];
}

function devices(argv: string[]): Record<string, unknown>[] {
  return argv.filter((_, i) => argv[i - 1] === "-device").map((a) => JSON.parse(a) as Record<string, unknown>);
}

async function consoleText(d: TestDaemon, vm: string): Promise<string> {
  return (await d.api.request("GET", `/v1/vms/${vm}/console/log`)).body.toString("utf8");
}
