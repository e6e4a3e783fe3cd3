// qemu's command line as a pure function of the definition: same definition,
// same argv, byte for byte (snapshot-tested). Devices and block nodes use qemu's
// JSON syntax so no file name or id can break its comma-separated option parser.
import type { DiskDefinition, VmDefinition } from "../vm/definition.js";
import type { VmPaths } from "../store/vm-paths.js";
import { vmTaps, type VmTap } from "../net/vm-taps.js";

export type Accel = "kvm" | "tcg";

export interface ArgvInputs {
  def: VmDefinition;
  paths: VmPaths;
  accel: Accel;
  /** Absolute, resolved paths of the files the definition names. */
  files: {
    kernel?: string;
    initrd?: string;
    /** Per disk name: the image qemu opens. */
    disks: Record<string, string>;
    /** The ISO in the CD-ROM drive, if the definition names one. */
    cdrom?: string;
    /** UEFI: OVMF's CODE file and the VM's own VARS file. */
    firmware?: { code: string; vars: string };
  };
  /** The destination of a live migration: qemu waits for `migrate-incoming`. */
  incoming?: boolean;
  /** /dev/vhost-net exists: bridge NICs get the in-kernel virtio-net backend under KVM. */
  vhostNet?: boolean;
}

/** Empty PCIe root ports left on q35 so devices can be hot-plugged later. */
export const SPARE_HOTPLUG_PORTS = 4;

export function buildQemuArgv({ def, paths, accel, files, incoming, vhostNet }: ArgvInputs): string[] {
  const q35 = def.machine === "q35" || def.machine.startsWith("pc-q35");
  const argv: string[] = [
    "-name", `guest=${def.name},debug-threads=on`,
    "-uuid", def.uuid,
    "-nodefaults",
    "-no-user-config",
    "-S",
    "-machine", `${def.machine},accel=${accel}${def.firmware === "uefi" ? `,pflash0=${FW_CODE_NODE},pflash1=${FW_VARS_NODE}` : ""}`,
    "-cpu", def.cpu ?? (accel === "kvm" ? "host" : "max"),
    "-smp", String(def.vcpus),
    "-m", `${def.memoryMiB}M`,
    "-display", "none",
    "-pidfile", paths.pidfile,
    "-chardev", `socket,id=qmp,path=${paths.qmpSocket},server=on,wait=off`,
    "-mon", "chardev=qmp,mode=control",
    // The chardev's own logfile records every byte of the serial console, whether or
    // not anyone is attached and while the daemon is down.
    "-chardev",
    `socket,id=serial0,path=${paths.consoleSocket},server=on,wait=off,logfile=${paths.consoleLog},logappend=on`,
    "-serial", "chardev:serial0",
    "-msg", "timestamp=on",
    // A guest power-off pauses qemu instead of ending it: the daemon sees why the run
    // ended and ends qemu itself, even if the guest powered off while the daemon was down.
    "-action", "shutdown=pause",
  ];

  argv.push(...bootArgs(def, files));
  argv.push(...firmwareArgs(def, files));

  // Each device gets its own PCIe root port on q35 so it can be unplugged later.
  let port = 0;
  const bus = (): Record<string, string> => {
    if (!q35) return {};
    port += 1;
    argv.push("-device", json({ driver: "pcie-root-port", id: `rp${port}`, chassis: port, port: port }));
    return { bus: `rp${port}` };
  };

  const taps = vmTaps(def);
  def.nics.forEach((nic, i) => {
    const tap = taps.find((t) => t.nic === i);
    // A multi-queue NIC needs an MSI-X vector per queue pair, plus config and control.
    const mq = tap && tap.queues > 1 ? { mq: true, vectors: 2 * tap.queues + 2 } : {};
    const netdev = tap ? tapNetdev(tap, i, accel === "kvm" && vhostNet === true) : { type: "user", id: `net${i}` };
    argv.push("-netdev", json(netdev));
    argv.push("-device", json({ driver: "virtio-net-pci", id: `nic${i}`, netdev: `net${i}`, mac: nic.mac, ...mq, ...bus() }));
  });

  def.disks.forEach((disk, i) => {
    const image = files.disks[disk.name];
    if (!image) throw new Error(`no resolved image for disk ${disk.name}`);
    argv.push(...diskArgs(disk, image));
    const bootIndex = diskBootIndex(def, i);
    argv.push(
      "-device",
      json({
        driver: "virtio-blk-pci",
        id: `disk-${disk.name}`,
        drive: `d-${disk.name}`,
        serial: disk.name,
        ...(bootIndex !== undefined ? { bootindex: bootIndex } : {}),
        ...bus(),
      }),
    );
  });

  argv.push(...cdromArgs(def, files));

  if (def.rng) {
    argv.push("-object", json({ "qom-type": "rng-random", id: "rng0", filename: "/dev/urandom" }));
    argv.push("-device", json({ driver: "virtio-rng-pci", id: "rng", rng: "rng0", ...bus() }));
  }

  for (let i = 0; i < (q35 ? SPARE_HOTPLUG_PORTS : 0); i++) bus();
  argv.push(...displayArgs(paths));
  if (incoming) argv.push("-incoming", "defer");
  return argv;
}

/**
 * The daemon made the tap already (src/net): qemu only opens it by name and runs no
 * ifup/ifdown script. vhost (the in-kernel backend) exchanges its notifications with
 * the guest through KVM's ioeventfd and irqfd, so it is asked for under KVM only.
 */
function tapNetdev(tap: VmTap, i: number, vhost: boolean): Record<string, unknown> {
  return {
    type: "tap",
    id: `net${i}`,
    ifname: tap.name,
    script: "no",
    downscript: "no",
    vhost,
    ...(tap.queues > 1 ? { queues: tap.queues } : {}),
  };
}

/**
 * The graphical console. Standard VGA because it shows everything without a guest
 * driver: legacy text mode (SeaBIOS, boot loaders, Linux's vgacon) and a linear
 * framebuffer that OVMF (QemuVideoDxe) and Linux (bochs-drm) drive. bochs-display
 * lacks the legacy VGA hardware that text-mode software writes to; virtio-vga adds
 * virtio-gpu, which nothing here uses. Last on the bus, so adding
 * it left the PCI addresses of the other devices as they were. `-display none` only
 * keeps qemu from opening a window: the VNC server (on a Unix socket, for local
 * clients only) and screendump work beside it.
 */
function displayArgs(paths: VmPaths): string[] {
  return ["-device", json({ driver: "VGA", id: "video0" }), "-vnc", `unix:${paths.vncSocket}`];
}

function bootArgs(def: VmDefinition, files: ArgvInputs["files"]): string[] {
  if (def.boot.kernel) {
    if (!files.kernel) throw new Error("no resolved kernel");
    const out = ["-kernel", files.kernel];
    if (files.initrd) out.push("-initrd", files.initrd);
    if (def.boot.cmdline !== undefined) out.push("-append", def.boot.cmdline);
    return out;
  }
  return [];
}

/** Disks get boot indexes in definition order when the boot order names `disk`. */
function diskBootIndex(def: VmDefinition, diskIndex: number): number | undefined {
  if (def.boot.kernel) return undefined;
  const order = def.boot.order ?? ["disk"];
  const pos = order.indexOf("disk");
  if (pos < 0) return undefined;
  return pos * 100 + diskIndex + 1;
}

function diskArgs(disk: DiskDefinition, image: string): string[] {
  return [
    "-blockdev",
    json({
      driver: "file",
      "node-name": `f-${disk.name}`,
      filename: image,
      cache: { direct: false, "no-flush": false },
      "auto-read-only": true,
      discard: "unmap",
    }),
    "-blockdev",
    json({ driver: disk.format, "node-name": `d-${disk.name}`, file: `f-${disk.name}`, "read-only": false, discard: "unmap" }),
  ];
}

const FW_CODE_NODE = "fw-code";
const FW_VARS_NODE = "fw-vars";

/**
 * OVMF as the machine's two flash devices, opened through -blockdev (not the
 * legacy `-drive if=pflash`): CODE read-only and shared, VARS the VM's own.
 */
function firmwareArgs(def: VmDefinition, files: ArgvInputs["files"]): string[] {
  if (def.firmware !== "uefi") return [];
  if (!files.firmware) throw new Error("no resolved UEFI firmware");
  const { code, vars } = files.firmware;
  return [
    "-blockdev", json({ driver: "file", "node-name": `${FW_CODE_NODE}-file`, filename: code, "read-only": true }),
    "-blockdev", json({ driver: "raw", "node-name": FW_CODE_NODE, file: `${FW_CODE_NODE}-file`, "read-only": true }),
    "-blockdev", json({ driver: "file", "node-name": `${FW_VARS_NODE}-file`, filename: vars, "read-only": false }),
    "-blockdev", json({ driver: "raw", "node-name": FW_VARS_NODE, file: `${FW_VARS_NODE}-file`, "read-only": false }),
  ];
}

/** The CD-ROM drive's qdev id: what QMP's tray and medium commands name. */
export const CDROM_DEVICE_ID = "cdrom0";
/** The medium a VM starts with; media inserted later get node names of their own. */
export const CDROM_START_NODE = "cd0";

/**
 * The CD-ROM drive on the machine's built-in controller (q35: AHCI port 0; pc:
 * IDE primary master), so it takes no PCI slot and firmware boots from it. The
 * medium is one read-only node with its file inline, so removing the medium
 * (blockdev-del of that node) closes the file too.
 */
function cdromArgs(def: VmDefinition, files: ArgvInputs["files"]): string[] {
  if (!def.cdrom) return [];
  const out: string[] = [];
  if (files.cdrom) out.push("-blockdev", json(cdromNode(CDROM_START_NODE, files.cdrom)));
  const order = def.boot.kernel ? [] : (def.boot.order ?? ["disk"]);
  const pos = order.indexOf("cdrom");
  out.push(
    "-device",
    json({
      driver: "ide-cd",
      id: CDROM_DEVICE_ID,
      bus: "ide.0",
      ...(files.cdrom ? { drive: CDROM_START_NODE } : {}),
      // As disks (diskBootIndex): 100 per place in the boot order.
      ...(pos >= 0 ? { bootindex: pos * 100 + 1 } : {}),
    }),
  );
  return out;
}

/** A read-only ISO medium: the blockdev-add arguments, also used for a live change. */
export function cdromNode(nodeName: string, image: string): Record<string, unknown> {
  return {
    driver: "raw",
    "node-name": nodeName,
    "read-only": true,
    file: { driver: "file", filename: image, "read-only": true },
  };
}

function json(v: Record<string, unknown>): string {
  return JSON.stringify(v);
}
