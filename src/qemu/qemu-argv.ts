// qemu's command line as a pure function of the definition: same definition,
// same argv, byte for byte (snapshot-tested). Devices and block nodes use qemu's
// JSON syntax so no file name or id can break its comma-separated option parser.
import type { DiskDefinition, VmDefinition } from "../vm/definition.js";
import type { VmPaths } from "../store/vm-paths.js";

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
  };
}

/** Empty PCIe root ports left on q35 so devices can be hot-plugged later. */
export const SPARE_HOTPLUG_PORTS = 4;

export function buildQemuArgv({ def, paths, accel, files }: ArgvInputs): string[] {
  const q35 = def.machine === "q35" || def.machine.startsWith("pc-q35");
  const argv: string[] = [
    "-name", `guest=${def.name},debug-threads=on`,
    "-uuid", def.uuid,
    "-nodefaults",
    "-no-user-config",
    "-S",
    "-machine", `${def.machine},accel=${accel}`,
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

  // Each device gets its own PCIe root port on q35 so it can be unplugged later.
  let port = 0;
  const bus = (): Record<string, string> => {
    if (!q35) return {};
    port += 1;
    argv.push("-device", json({ driver: "pcie-root-port", id: `rp${port}`, chassis: port, port: port }));
    return { bus: `rp${port}` };
  };

  def.nics.forEach((nic, i) => {
    argv.push("-netdev", json({ type: nic.network.type, id: `net${i}` }));
    argv.push("-device", json({ driver: "virtio-net-pci", id: `nic${i}`, netdev: `net${i}`, mac: nic.mac, ...bus() }));
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

  if (def.rng) {
    argv.push("-object", json({ "qom-type": "rng-random", id: "rng0", filename: "/dev/urandom" }));
    argv.push("-device", json({ driver: "virtio-rng-pci", id: "rng", rng: "rng0", ...bus() }));
  }

  for (let i = 0; i < (q35 ? SPARE_HOTPLUG_PORTS : 0); i++) bus();
  return argv;
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

function json(v: Record<string, unknown>): string {
  return JSON.stringify(v);
}
