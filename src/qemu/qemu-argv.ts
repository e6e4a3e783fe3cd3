// qemu's command line as a pure function of the definition: same definition,
// same argv, byte for byte (snapshot-tested). Devices and block nodes use qemu's
// JSON syntax so no file name or id can break its comma-separated option parser.
import type { DiskDefinition, VmDefinition } from "../vm/definition.js";
import type { VmPaths } from "../store/vm-paths.js";
import { cdromArgs, cloudInitArgs, firmwareArgs, FW_CODE_NODE, FW_VARS_NODE } from "./cdrom-firmware-argv.js";
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
  /** The host's qemu can use io_uring: the default `aio` of disks that name none. */
  ioUring?: boolean;
}

/** Empty PCIe root ports left on q35 so devices can be hot-plugged later. */
export const SPARE_HOTPLUG_PORTS = 4;

export function buildQemuArgv({ def, paths, accel, files, incoming, vhostNet, ioUring }: ArgvInputs): string[] {
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
    // A second monitor for hands-on debugging (qemu's own tools); events go to both.
    "-chardev", `socket,id=qmp-debug,path=${paths.qmpDebugSocket},server=on,wait=off`,
    "-mon", "chardev=qmp-debug,mode=control",
    // The chardev's own logfile records every byte of the serial console, whether or
    // not anyone is attached and while the daemon is down.
    "-chardev",
    `socket,id=serial0,path=${paths.consoleSocket},server=on,wait=off,logfile=${paths.consoleLog},logappend=on`,
    "-serial", "chardev:serial0",
    "-msg", "timestamp=on",
    // A guest power-off pauses qemu instead of ending it: the daemon sees why the run
    // ended and ends qemu itself, even if the guest powered off while the daemon was down.
    "-action", "shutdown=pause",
    // seccomp: no obsolete syscalls, no setuid/setgid, no fork/exec, no scheduling
    // or resource changes. qemu already runs unprivileged (see qemu-launcher).
    "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
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
    argv.push(...diskArgs(disk, image, { ioUring: ioUring === true }));
    const bootIndex = diskBootIndex(def, i);
    argv.push(
      "-device",
      json({
        driver: "virtio-blk-pci",
        id: `disk-${disk.name}`,
        drive: `d-${disk.name}`,
        serial: disk.name,
        ...diskDeviceOptions(disk),
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

  // cloudInitArgs pushes its root port (via bus) before its own devices.
  const seedArgs = cloudInitArgs(def, paths.cloudInitSeed, bus);
  argv.push(...seedArgs);

  for (let i = 0; i < (q35 ? SPARE_HOTPLUG_PORTS : 0); i++) bus();
  argv.push(...displayArgs(paths));
  argv.push(...guestChannelArgs(def, paths));
  if (incoming) argv.push("-incoming", "defer");
  return argv;
}

/**
 * The daemon made the tap already (src/net): qemu only opens it by name and runs no
 * ifup/ifdown script. vhost (the in-kernel backend) exchanges its notifications with
 * the guest through KVM's ioeventfd and irqfd, so it is asked for under KVM only.
 */
export function tapNetdev(tap: VmTap, i: number, vhost: boolean): Record<string, unknown> {
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

/** The guest agent's virtio-serial port: the name qemu-ga looks for. */
export const GUEST_AGENT_PORT = "org.qemu.guest_agent.0";

/**
 * The memory balloon and the guest agent's channel. On the root bus after the
 * display, so adding them moved no other device's PCI address; neither is ever
 * unplugged, so neither needs a root port of its own. The agent's socket is a
 * server qemu keeps open whether or not a guest agent listens behind it.
 */
function guestChannelArgs(def: VmDefinition, paths: VmPaths): string[] {
  const out: string[] = [];
  if (def.balloon) out.push("-device", json({ driver: "virtio-balloon-pci", id: "balloon0" }));
  out.push(
    "-chardev", `socket,id=qga0,path=${paths.qgaSocket},server=on,wait=off`,
    "-device", json({ driver: "virtio-serial-pci", id: "vserial0" }),
    "-device", json({ driver: "virtserialport", id: "qga-port", bus: "vserial0.0", chardev: "qga0", name: GUEST_AGENT_PORT }),
  );
  return out;
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

/** What the host offers disks, probed once at daemon start (src/storage/io-uring-probe.ts). */
export interface DiskHostSupport {
  /** qemu can use Linux io_uring (built with liburing, and the kernel allows it). */
  ioUring: boolean;
}

/** The iothread a disk's virtio-blk device runs its I/O in: one per disk, so a busy disk stalls no other. */
export function diskIothreadId(disk: Pick<DiskDefinition, "name">): string {
  return `io-${disk.name}`;
}

/**
 * What a disk's virtio-blk device gets besides its drive: its iothread, and for
 * writethrough the guest is shown no volatile write cache, so qemu flushes each
 * write before completing it (the device half of qemu's legacy cache=writethrough).
 */
export function diskDeviceOptions(disk: DiskDefinition): Record<string, unknown> {
  return { iothread: diskIothreadId(disk), ...(disk.cache === "writethrough" ? { "write-cache": "off" } : {}) };
}

/**
 * A disk's iothread and its two block nodes: `f-<disk>` the file, `d-<disk>` the
 * format on top of it (what QMP block commands name). cache none is O_DIRECT: the
 * guest has its own page cache, so the host's would only hold a second copy and
 * hide write errors until it flushes. `aio` defaults to io_uring where the host has
 * it, else a thread pool (native needs O_DIRECT).
 */
export function diskArgs(disk: DiskDefinition, image: string, host: DiskHostSupport = { ioUring: false }): string[] {
  const cache = disk.cache ?? "none";
  const aio = disk.aio ?? (host.ioUring ? "io_uring" : "threads");
  return [
    "-object",
    json({ "qom-type": "iothread", id: diskIothreadId(disk) }),
    "-blockdev",
    json({
      driver: "file",
      "node-name": `f-${disk.name}`,
      filename: image,
      aio,
      cache: { direct: cache === "none", "no-flush": cache === "unsafe" },
      "auto-read-only": true,
      discard: "unmap",
    }),
    "-blockdev",
    json({
      driver: disk.format,
      "node-name": `d-${disk.name}`,
      file: `f-${disk.name}`,
      "read-only": false,
      discard: "unmap",
    }),
  ];
}

function json(v: Record<string, unknown>): string {
  return JSON.stringify(v);
}
