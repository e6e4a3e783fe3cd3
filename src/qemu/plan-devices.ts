// The plan's devices, one function each, and the ids and node names they get.
// A device plugged into a running qemu is planned by the same function as at
// start, so a hot-added device looks exactly like one the VM was started with,
// to qemu and to the next daemon.
import type { DiskDefinition, NicDefinition, VmDefinition } from "../definition/vm-definition.js";
import type { VmPaths } from "../store/vm-paths.js";
import type { VmTap } from "../net/vm-taps.js";
import type { DevicePlan, NetdevOptions, PlanEntry } from "./plan-types.js";
import { THROTTLE_GROUP_ID, throttleNodeName } from "../limits/disk-throttle.js";

export const diskDeviceId = (disk: string): string => `disk-${disk}`;
export const nicDeviceId = (index: number): string => `nic${index}`;
export const netdevId = (index: number): string => `net${index}`;

/**
 * A disk's iothread and its three block nodes: the file, the format over it (the
 * top of the disk's chain; a snapshot's overlay goes on top of it), and the VM's
 * throttle filter over the whole chain, which the device is attached to. A VM
 * started by an earlier vmhostd has the throttle between file and format instead
 * (src/vm/snapshots/block-graph.ts tells the two apart).
 */
export function diskBackendIds(disk: string): { iothread: string; fileNode: string; throttleNode: string; formatNode: string } {
  return { iothread: `io-${disk}`, fileNode: `f-${disk}`, throttleNode: throttleNodeName(disk), formatNode: `d-${disk}` };
}

/** The iothread a disk's virtio-blk device runs its I/O in: one per disk, so a busy disk stalls no other. */
export function diskIothreadId(disk: Pick<DiskDefinition, "name">): string {
  return diskBackendIds(disk.name).iothread;
}

/** What the host offers disks, probed once at daemon start (src/storage/io-uring-probe.ts). */
export interface DiskHostSupport {
  /** qemu can use Linux io_uring (built with liburing, and the kernel allows it). */
  ioUring: boolean;
}

/**
 * A disk: its iothread, its block nodes and its virtio-blk device. Its I/O
 * passes the VM's throttle group (disk-throttle.ts), which a VM's qemu always
 * has, so limits can be set live and a hot-plugged disk joins the budget. cache
 * none is O_DIRECT: the guest has its own page cache, so the host's would only
 * hold a second copy and hide write errors until it flushes. `aio` defaults to
 * io_uring where the host has it, else a thread pool (native needs O_DIRECT).
 * For writethrough the guest is shown no volatile write cache, so qemu flushes
 * each write before completing it (the device half of qemu's legacy
 * cache=writethrough). A disk hot-plugged later has no boot index.
 */
export function planDisk(disk: DiskDefinition, image: string, host: DiskHostSupport, bootIndex?: number): DevicePlan {
  const cache = disk.cache ?? "none";
  const ids = diskBackendIds(disk.name);
  return {
    backends: [
      { kind: "object", object: { "qom-type": "iothread", id: ids.iothread } },
      {
        kind: "blockdev",
        node: {
          driver: "file",
          "node-name": ids.fileNode,
          filename: image,
          aio: disk.aio ?? (host.ioUring ? "io_uring" : "threads"),
          cache: { direct: cache === "none", "no-flush": cache === "unsafe" },
          "auto-read-only": true,
          discard: "unmap",
        },
      },
      { kind: "blockdev", node: { driver: disk.format, "node-name": ids.formatNode, file: ids.fileNode, "read-only": false, discard: "unmap" } },
      { kind: "blockdev", node: { driver: "throttle", "node-name": ids.throttleNode, "throttle-group": THROTTLE_GROUP_ID, file: ids.formatNode } },
    ],
    device: {
      driver: "virtio-blk-pci",
      id: diskDeviceId(disk.name),
      drive: ids.throttleNode,
      serial: disk.name,
      iothread: ids.iothread,
      ...(disk.cache === "writethrough" ? { "write-cache": "off" as const } : {}),
      ...(bootIndex !== undefined ? { bootindex: bootIndex } : {}),
    },
  };
}

/** Disks get boot indexes in definition order when the boot order names `disk`. */
export function diskBootIndex(def: VmDefinition, diskIndex: number): number | undefined {
  if (def.boot.kernel) return undefined;
  const order = def.boot.order ?? ["disk"];
  const pos = order.indexOf("disk");
  if (pos < 0) return undefined;
  return pos * 100 + diskIndex + 1;
}

/** NIC `index`: a tap made by the daemon (bridge) or qemu's user-mode network, and its virtio-net device. */
export function planNic(nic: NicDefinition, index: number, tap: VmTap | undefined, vhost: boolean): DevicePlan {
  // A multi-queue NIC needs an MSI-X vector per queue pair, plus config and control.
  const mq = tap && tap.queues > 1 ? { mq: true, vectors: 2 * tap.queues + 2 } : {};
  return {
    backends: [{ kind: "netdev", netdev: tap ? tapNetdev(tap, index, vhost) : { type: "user", id: netdevId(index) } }],
    device: { driver: "virtio-net-pci", id: nicDeviceId(index), netdev: netdevId(index), mac: nic.mac, ...mq },
  };
}

/**
 * The daemon made the tap already (src/net): qemu only opens it by name and runs no
 * ifup/ifdown script. vhost (the in-kernel backend) exchanges its notifications with
 * the guest through KVM's ioeventfd and irqfd, so it is asked for under KVM only.
 */
export function tapNetdev(tap: VmTap, i: number, vhost: boolean): NetdevOptions {
  return {
    type: "tap",
    id: netdevId(i),
    ifname: tap.name,
    script: "no",
    downscript: "no",
    vhost,
    ...(tap.queues > 1 ? { queues: tap.queues } : {}),
  };
}

/** The guest's entropy, from the host's /dev/urandom (world-readable: not handed over). */
export function planRng(): DevicePlan {
  return {
    backends: [{ kind: "object", object: { "qom-type": "rng-random", id: "rng0", filename: "/dev/urandom" } }],
    device: { driver: "virtio-rng-pci", id: "rng", rng: "rng0" },
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
export function displayEntries(paths: VmPaths): PlanEntry[] {
  return [{ kind: "device", device: { driver: "VGA", id: "video0" } }, { kind: "vnc", socket: paths.vncSocket }];
}

/** The guest agent's virtio-serial port: the name qemu-ga looks for. */
export const GUEST_AGENT_PORT = "org.qemu.guest_agent.0";

/**
 * The memory balloon and the guest agent's channel. On the root bus after the
 * display, so adding them moved no other device's PCI address; neither is ever
 * unplugged, so neither needs a root port of its own. The agent's socket is a
 * server qemu keeps open whether or not a guest agent listens behind it.
 */
export function guestChannelEntries(def: VmDefinition, paths: VmPaths): PlanEntry[] {
  const out: PlanEntry[] = [];
  if (def.balloon) out.push({ kind: "device", device: { driver: "virtio-balloon-pci", id: "balloon0" } });
  out.push(
    { kind: "chardev", chardev: { id: "qga0", path: paths.qgaSocket } },
    { kind: "device", device: { driver: "virtio-serial-pci", id: "vserial0" } },
    { kind: "device", device: { driver: "virtserialport", id: "qga-port", bus: "vserial0.0", chardev: "qga0", name: GUEST_AGENT_PORT } },
  );
  return out;
}
