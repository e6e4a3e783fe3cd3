// The machine a VM's qemu is to be, as typed objects: a pure function of the
// definition and what the host resolved for it (files, accelerator, paths).
// Renderers turn the plan into what each consumer needs, so no consumer reads
// another's output back: qemu-argv.ts (the command line of a start),
// plan-qmp.ts (the QMP commands of a hot-plug), plan-files.ts (the files handed
// to qemu before it opens them), plan-layout.ts (the device layout a migration
// compares). The types are in plan-types.ts.
import { isQ35, type VmDefinition } from "../definition/vm-definition.js";
import type { VmPaths } from "../store/vm-paths.js";
import { vmTaps } from "../net/vm-taps.js";
import { cdromEntries, cloudInitEntries, firmwareEntries, FW_CODE_NODE, FW_VARS_NODE } from "./cdrom-firmware-plan.js";
import { diskBootIndex, displayEntries, guestChannelEntries, planDisk, planNic, planRng } from "./plan-devices.js";
import { THROTTLE_GROUP_ID, throttleLimitsSet } from "../limits/disk-throttle.js";
import type { Accel, DevicePlan, MachineFiles, MachinePlan, PlanEntry } from "./plan-types.js";

export interface PlanInputs {
  def: VmDefinition;
  paths: VmPaths;
  accel: Accel;
  files: MachineFiles;
  incoming?: boolean;
  /** /dev/vhost-net exists: bridge NICs get the in-kernel virtio-net backend under KVM. */
  vhostNet?: boolean;
  /** The host's qemu can use io_uring: the default `aio` of disks that name none. */
  ioUring?: boolean;
}

/** Empty PCIe root ports left on q35 so devices can be hot-plugged later. */
export const SPARE_HOTPLUG_PORTS = 4;

export function buildMachinePlan({ def, paths, accel, files, incoming, vhostNet, ioUring }: PlanInputs): MachinePlan {
  const entries: PlanEntry[] = [...firmwareEntries(def, files)];
  const q35 = isQ35(def.machine);
  const port = rootPorts(q35, entries);
  const plug = (part: DevicePlan): void => {
    entries.push(...part.backends);
    const bus = port();
    entries.push({ kind: "device", device: bus ? { ...part.device, bus } : part.device });
  };

  // Before any disk: each disk's throttle node joins this group.
  entries.push({ kind: "object", object: { "qom-type": "throttle-group", id: THROTTLE_GROUP_ID, limits: throttleLimitsSet(def.limits?.disk) } });
  const taps = vmTaps(def);
  def.nics.forEach((nic, i) => plug(planNic(nic, i, taps.find((t) => t.nic === i), accel === "kvm" && vhostNet === true)));
  def.disks.forEach((disk, i) => {
    const image = files.disks[disk.name];
    if (!image) throw new Error(`no resolved image for disk ${disk.name}`);
    plug(planDisk(disk, image, { ioUring: ioUring === true }, diskBootIndex(def, i)));
  });
  entries.push(...cdromEntries(def, files));
  if (def.rng) plug(planRng());
  entries.push(...cloudInitEntries(def, paths.cloudInitSeed, port));
  for (let i = 0; i < (q35 ? SPARE_HOTPLUG_PORTS : 0); i++) port();
  entries.push(...displayEntries(paths), ...guestChannelEntries(def, paths));

  return {
    name: def.name,
    uuid: def.uuid,
    machine: def.machine,
    accel,
    ...(def.firmware === "uefi" ? { pflash: { code: FW_CODE_NODE, vars: FW_VARS_NODE } } : {}),
    cpu: def.cpu ?? (accel === "kvm" ? "host" : "max"),
    vcpus: def.vcpus,
    memoryMiB: def.memoryMiB,
    pidfile: paths.pidfile,
    // A second monitor for hands-on debugging (qemu's own tools); events go to both.
    monitors: [{ id: "qmp", path: paths.qmpSocket }, { id: "qmp-debug", path: paths.qmpDebugSocket }],
    // The chardev's own logfile records every byte of the serial console, whether or
    // not anyone is attached and while the daemon is down.
    serial: { id: "serial0", path: paths.consoleSocket, logfile: paths.consoleLog },
    ...(def.boot.kernel ? { kernel: kernelBoot(def, files) } : {}),
    entries,
    incoming: incoming === true,
  };
}

/**
 * Each hot-pluggable device gets its own PCIe root port on q35, made just before
 * it, so it can be unplugged later. Returns the port's id, or undefined on pc,
 * whose root bus takes devices directly.
 */
function rootPorts(q35: boolean, entries: PlanEntry[]): () => string | undefined {
  let n = 0;
  return () => {
    if (!q35) return undefined;
    n += 1;
    entries.push({ kind: "device", device: { driver: "pcie-root-port", id: `rp${n}`, chassis: n, port: n } });
    return `rp${n}`;
  };
}

function kernelBoot(def: VmDefinition, files: MachineFiles): NonNullable<MachinePlan["kernel"]> {
  if (!files.kernel) throw new Error("no resolved kernel");
  return {
    kernel: files.kernel,
    ...(files.initrd ? { initrd: files.initrd } : {}),
    ...(def.boot.cmdline !== undefined ? { cmdline: def.boot.cmdline } : {}),
  };
}
