// The machine plan's types: what qemu is to create, as typed objects with the
// shapes of qemu's QAPI arguments (BlockdevOptions, device_add, object-add,
// netdev_add), so the command line's JSON options and QMP both take them as
// they are. Built by machine-plan.ts, rendered by qemu-argv.ts, plan-qmp.ts,
// plan-files.ts and plan-layout.ts.
import type { ThrottleLimits } from "../limits/disk-throttle.js";

export type Accel = "kvm" | "tcg";

/** A `file` protocol node: the one kind of node that opens a host file. */
export type FileNode = {
  driver: "file";
  "node-name"?: string;
  filename: string;
  aio?: "threads" | "native" | "io_uring";
  cache?: { direct: boolean; "no-flush": boolean };
  "auto-read-only"?: boolean;
  "read-only"?: boolean;
  discard?: "unmap";
};

/** A format node over a file node: one named by its node name, or one given inline. */
export type FormatNode = {
  driver: "raw" | "qcow2";
  "node-name": string;
  file: string | FileNode;
  "read-only": boolean;
  discard?: "unmap";
};

/** A filter node that counts the I/O through it against a throttle group (disk-throttle.ts). */
export type ThrottleNode = {
  driver: "throttle";
  "node-name": string;
  "throttle-group": string;
  file: string;
};

export type BlockdevNode = FileNode | FormatNode | ThrottleNode;

/** Where a PCI device sits: a root port's id on q35; absent on pc's root bus (or to let qemu choose). */
type OnBus = { bus?: string };

/** Devices planned with their backends (DevicePlan); on q35 each gets a root port of its own, so disks and NICs can be plugged and unplugged live. */
export type PluggableDevice =
  | ({ driver: "virtio-net-pci"; id: string; netdev: string; mac: string; mq?: boolean; vectors?: number } & OnBus)
  | ({ driver: "virtio-blk-pci"; id: string; drive: string; serial: string; iothread: string; "write-cache"?: "off"; bootindex?: number } & OnBus)
  | ({ driver: "virtio-rng-pci"; id: string; rng: string } & OnBus);

export type DeviceOptions =
  | PluggableDevice
  | { driver: "pcie-root-port"; id: string; chassis: number; port: number }
  | ({ driver: "virtio-scsi-pci"; id: string } & OnBus)
  | { driver: "ide-cd"; id: string; bus: string; drive?: string; bootindex?: number }
  | { driver: "scsi-cd"; id: string; bus: string; drive: string }
  | { driver: "VGA"; id: string }
  | { driver: "virtio-balloon-pci"; id: string }
  | { driver: "virtio-serial-pci"; id: string }
  | { driver: "virtserialport"; id: string; bus: string; chardev: string; name: string };

export type ObjectOptions =
  | { "qom-type": "iothread"; id: string }
  | { "qom-type": "rng-random"; id: string; filename: string }
  | { "qom-type": "throttle-group"; id: string; limits: ThrottleLimits };

export type NetdevOptions =
  | { type: "user"; id: string }
  | { type: "tap"; id: string; ifname: string; script: "no"; downscript: "no"; vhost: boolean; queues?: number };

/** A listening Unix socket qemu keeps open whether or not a client is attached. */
export type SocketChardev = {
  id: string;
  path: string;
  /** Every byte through the chardev is appended to this file too. */
  logfile?: string;
};

/** One thing qemu creates after the machine itself. */
export type PlanEntry =
  | { kind: "object"; object: ObjectOptions }
  | { kind: "blockdev"; node: BlockdevNode }
  | { kind: "netdev"; netdev: NetdevOptions }
  | { kind: "device"; device: DeviceOptions }
  | { kind: "chardev"; chardev: SocketChardev }
  | { kind: "vnc"; socket: string };

/** What a device rests on: made before it, freed after it. */
export type BackendEntry = Extract<PlanEntry, { kind: "object" | "blockdev" | "netdev" }>;

/** A device that can be plugged at start or into a running qemu, without its bus (chosen where it is plugged). */
export interface DevicePlan {
  backends: BackendEntry[];
  device: PluggableDevice;
}

export interface MachinePlan {
  name: string;
  uuid: string;
  machine: string;
  accel: Accel;
  /** UEFI: the block nodes behind the machine's two flash devices (CODE, VARS). */
  pflash?: { code: string; vars: string };
  cpu: string;
  vcpus: number;
  memoryMiB: number;
  pidfile: string;
  /** QMP monitors, each on its own socket. */
  monitors: SocketChardev[];
  /** The first serial port: the guest's console. */
  serial: SocketChardev;
  /** Direct kernel boot. */
  kernel?: { kernel: string; initrd?: string; cmdline?: string };
  /** In the order qemu creates them, which fixes each device's PCI address: reordering moves guests' devices. */
  entries: PlanEntry[];
  /** The destination of a live migration: qemu waits for `migrate-incoming`. */
  incoming: boolean;
}

/** Absolute, resolved paths of the files the definition names. */
export interface MachineFiles {
  kernel?: string;
  initrd?: string;
  /** Per disk name: the image qemu opens. */
  disks: Record<string, string>;
  /** The ISO in the CD-ROM drive, if the definition names one. */
  cdrom?: string;
  /** UEFI: OVMF's CODE file and the VM's own VARS file. */
  firmware?: { code: string; vars: string };
}
