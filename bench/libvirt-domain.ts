// The bench guest as a libvirt domain, kept as close as libvirt allows to what
// vmhostd runs (q35, TCG, -cpu max, direct kernel boot, virtio-rng, no NIC or
// disk, serial on a Unix socket with a log file, a PCIe root port for the rng
// plus 4 spare ones), and one timed `virsh start`.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import type { GuestFiles } from "./guest-files.js";
import type { PrivateLibvirt } from "./private-libvirt.js";

export interface DomainSpec {
  name: string;
  vcpus: number;
  memoryMiB: number;
  guest: GuestFiles;
  qemuBinary: string;
  /** Directory for the console socket and log. */
  dir: string;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/'/g, "&apos;").replace(/"/g, "&quot;");
}

export function domainXml(d: DomainSpec): string {
  const e = xmlEscape;
  // libvirt puts the rng on the first free port, as vmhostd does with its rp1.
  const rootPorts = Array.from({ length: 5 }, (_, i) => `    <controller type='pci' index='${i + 1}' model='pcie-root-port'/>`);
  return `<domain type='qemu'>
  <name>${e(d.name)}</name>
  <memory unit='MiB'>${d.memoryMiB}</memory>
  <vcpu>${d.vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>${e(d.guest.kernel)}</kernel>
    <initrd>${e(d.guest.initrd)}</initrd>
    <cmdline>${e(d.guest.cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <devices>
    <emulator>${e(d.qemuBinary)}</emulator>
    <serial type='unix'>
      <source mode='bind' path='${e(path.join(d.dir, "console.sock"))}'/>
      <log file='${e(path.join(d.dir, "console.log"))}' append='on'/>
    </serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <controller type='pci' index='0' model='pcie-root'/>
${rootPorts.join("\n")}
  </devices>
</domain>
`;
}

export async function defineDomain(lv: PrivateLibvirt, spec: DomainSpec): Promise<void> {
  const file = path.join(spec.dir, `${spec.name}.xml`);
  await writeFile(file, domainXml(spec));
  await lv.virsh("define", file);
}

export interface LibvirtTiming {
  /** Until `virsh start` exited: libvirt returns once qemu has been told to `cont`. */
  startReturned: number;
  /** Until a following `virsh domstate` printed "running": the timed end the table uses. */
  running: number;
}

/** One timed start; the domain is destroyed (untimed) before returning. */
export async function timeLibvirtStart(lv: PrivateLibvirt, name: string): Promise<LibvirtTiming> {
  const t0 = performance.now();
  await lv.virsh("start", name);
  const startReturned = performance.now() - t0;
  try {
    while ((await lv.virsh("domstate", name)) !== "running") {
      // libvirt resumes the CPUs before virsh start returns, so this loop normally runs once.
    }
    return { startReturned, running: performance.now() - t0 };
  } finally {
    await lv.virsh("destroy", name);
  }
}
