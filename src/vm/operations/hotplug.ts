// Adding and removing disks and NICs, on a running VM (hot-plug, through QMP)
// or a stopped one (its definition and disk files only). Each change is
// journaled with what it is about before it acts, and ends by recording the
// definition, so the next start has the device (or not) and a restarted daemon
// can settle a change it cut short: it looks whether the device is in qemu and
// finishes or undoes the rest to match (recoverHotplug).
import { rm } from "node:fs/promises";
import { DeviceExists, DeviceNotFound, DeviceRemovalPending, DeviceRemovalTimeout, SnapshotUnsupported, ValidationFailed, VmStateConflict } from "../../errors.js";
import type { JournalEntry } from "../../store/operation-journal.js";
import { diskPath } from "../../store/vm-paths.js";
import { checkBridges, createVmTaps, removeVmTaps } from "../../net/tap-devices.js";
import { applyTapShaping, removeShapingOf, removeTapShaping } from "../../limits/tap-shaping.js";
import { vmTaps } from "../../net/vm-taps.js";
import { generateMac, type DiskDefinition, type NicDefinition, type VmDefinition } from "../../definition/vm-definition.js";
import {
  deviceExists,
  diskDeviceId,
  nicDeviceId,
  plugDisk,
  plugNic,
  releaseDiskBackend,
  releaseNicBackend,
  unplugDevice,
  whenReleased,
} from "../devices/device-hotplug.js";
import type { HostContext } from "../host-context.js";
import { runSteps, type Step } from "../operation-steps.js";
import type { ActionRun } from "./action-run.js";
import type { QemuSession } from "../qemu-session.js";
import type { Vm } from "../vm.js";
import { checkInPlaceImage } from "../devices/disk-sources.js";
import { ImageInspector } from "../../storage/image-inspector.js";
import { readSnapshotRecord } from "../snapshots/snapshot-record.js";

const GiB = 1024 ** 3;
/** How long a removal waits for the guest by default. Linux's pciehp alone waits 5 s for a cancel. */
export const DEFAULT_RELEASE_TIMEOUT_SEC = 30;

/** Called when a removal that timed out can be finished (the guest let go, or qemu ended). */
export type FinishRemoval = () => void;

type Ctx = { vm: Vm; host: HostContext; session: QemuSession | undefined; createdFile?: string };

async function recordDefinition(c: Ctx, change: (d: VmDefinition) => VmDefinition): Promise<void> {
  await c.vm.changeDefinition(c.host.store, change);
}

/** A running VM's qemu, or undefined when it is stopped; other states cannot take device changes. */
function liveSession(vm: Vm, wanted: string): QemuSession | undefined {
  const state = vm.settledState();
  if (state === "stopped" || state === "crashed") return undefined;
  if ((state === "running" || state === "paused") && vm.session?.connected) return vm.session;
  throw new VmStateConflict(vm.name, state, wanted);
}

// ---- disks ----

export async function addDisk(vm: Vm, host: HostContext, disk: DiskDefinition, run: ActionRun): Promise<void> {
  if (disk.backingImage !== undefined || disk.importImage !== undefined || disk.restoreFrom !== undefined) {
    const message = "a disk added to an existing VM is a blank one (sizeGiB) or an existing image (image)";
    const field = disk.backingImage !== undefined ? "backingImage" : disk.importImage !== undefined ? "importImage" : "restoreFrom";
    throw new ValidationFailed(message, [{ field, message }]);
  }
  if (vm.definition.disks.some((d) => d.name === disk.name)) {
    throw new DeviceExists(`VM "${vm.name}" already has a disk named "${disk.name}"`, { field: "name", disk: disk.name });
  }
  if (vm.definition.disks.length >= 32) throw new ValidationFailed("a VM has at most 32 disks", [{ field: "name", message: "a VM has at most 32 disks" }]);
  const session = liveSession(vm, "add a disk to");
  let image: string;
  if (disk.image !== undefined) {
    image = await checkInPlaceImage(host.pools, new ImageInspector(host.pools), disk, "image", "format");
  } else {
    image = diskPath(vm.paths, disk);
  }
  const steps: Step<Ctx>[] = [
    {
      name: "create-file",
      run: async (c) => {
        if (disk.sizeGiB === undefined) return;
        await host.qemuImg.create(image, disk.format, Math.ceil((disk.sizeGiB * GiB) / 512) * 512);
        c.createdFile = image;
      },
      undo: async (c) => {
        if (c.createdFile) await rm(c.createdFile, { force: true });
      },
    },
    {
      name: "plug",
      run: async (c) => {
        if (c.session) await plugDisk(c.session, vm.definition.machine, disk, image, host.ioUring === true);
      },
      // Just plugged: the guest is asked to let go, and the backend freed once it has (best effort).
      undo: async (c) => {
        if (!c.session) return;
        await unplugDevice(c.session, diskDeviceId(disk.name), 10_000);
        await releaseDiskBackend(c.session, disk.name);
      },
    },
    { name: "record-definition", run: (c) => recordDefinition(c, (d) => ({ ...d, disks: [...d.disks, disk] })) },
  ];
  await run.journaled({ kind: "add-disk", disk }, () => runSteps(steps, { vm, host, session }, vm.journal, vm.log), { live: session !== undefined });
  vm.publish("vm.disk-added", { disk: disk.name, live: session !== undefined });
}

export async function removeDisk(vm: Vm, host: HostContext, name: string, timeoutSec: number, finishLater: FinishRemoval, run: ActionRun): Promise<void> {
  const disk = vm.definition.disks.find((d) => d.name === name);
  if (!disk) throw new DeviceNotFound(`VM "${vm.name}" has no disk named "${name}"`, { disk: name });
  const session = liveSession(vm, "remove a disk from");
  // Its graph is a chain the device's removal would not take apart; its snapshots would name a disk that is gone.
  if ((await readSnapshotRecord(vm.paths)).chains[name]) {
    throw new SnapshotUnsupported(`disk ${name} of VM "${vm.name}" has snapshots; delete them before removing the disk`, { vm: vm.name, disk: name });
  }
  const id = diskDeviceId(name);
  await checkPending(vm, session, id);
  const steps: Step<Ctx>[] = [
    {
      name: "unplug",
      run: async (c) => {
        if (!c.session) return;
        await unplugOrLeavePending(vm, c.session, id, timeoutSec, finishLater);
        await releaseDiskBackend(c.session, name);
      },
    },
    { name: "record-definition", run: (c) => recordDefinition(c, (d) => ({ ...d, disks: d.disks.filter((x) => x.name !== name) })) },
    {
      // The VM's own disk goes with it; an image in a pool only stops being used.
      name: "remove-file",
      run: async () => {
        if (disk.image === undefined) await rm(diskPath(vm.paths, disk), { force: true });
      },
    },
  ];
  await run.journaled({ kind: "remove-disk", disk: name }, () => runSteps(steps, { vm, host, session }, vm.journal, vm.log), { disk, live: session !== undefined });
  vm.publish("vm.disk-removed", { disk: name, live: session !== undefined });
}

// ---- NICs ----

/** A definition holding only NIC `index` as a bridge NIC, so the tap helpers make or remove that one tap. */
function oneNic(def: VmDefinition, index: number, nic: NicDefinition): Pick<VmDefinition, "name" | "uuid" | "vcpus" | "nics"> {
  const user: NicDefinition = { model: "virtio-net", mac: nic.mac, network: { type: "user" } };
  return { name: def.name, uuid: def.uuid, vcpus: def.vcpus, nics: [...Array.from({ length: index }, () => user), nic] };
}

export async function addNic(vm: Vm, host: HostContext, req: Omit<NicDefinition, "mac"> & { mac?: string }, run: ActionRun): Promise<NicDefinition> {
  const nic: NicDefinition = { ...req, mac: req.mac ?? generateMac() };
  if (vm.definition.nics.some((n) => n.mac === nic.mac)) {
    throw new DeviceExists(`VM "${vm.name}" already has a NIC with MAC ${nic.mac}`, { field: "mac", mac: nic.mac });
  }
  if (vm.definition.nics.length >= 16) throw new ValidationFailed("a VM has at most 16 NICs", [{ field: "network", message: "a VM has at most 16 NICs" }]);
  const session = liveSession(vm, "add a NIC to");
  const index = vm.definition.nics.length;
  const taps = oneNic(vm.definition, index, nic);
  const steps: Step<Ctx>[] = [
    {
      name: "plug",
      run: async (c) => {
        if (!c.session) {
          if (nic.network.type === "bridge") await checkBridge(taps, index);
          return;
        }
        const [tap] = nic.network.type === "bridge" ? await createVmTaps(taps, vm.log, c.session.identity) : [];
        try {
          // The VM's network limits are on the tap before the guest can use it.
          if (tap) await applyTapShaping(tap.name, vm.definition.limits?.network);
          await plugNic(c.session, vm.definition.machine, { index, nic, tap, accel: host.accel });
        } catch (err) {
          if (tap) await removeTapShaping(tap.name);
          await removeVmTaps(taps, vm.log);
          throw err;
        }
      },
      undo: async (c) => {
        if (!c.session) return;
        await unplugDevice(c.session, nicDeviceId(index), 10_000);
        await releaseNicBackend(c.session, index);
        await removeShapingOf(vmTaps(taps));
        await removeVmTaps(taps, vm.log);
      },
    },
    { name: "record-definition", run: (c) => recordDefinition(c, (d) => ({ ...d, nics: [...d.nics, nic] })) },
  ];
  await run.journaled({ kind: "add-nic", nic }, () => runSteps(steps, { vm, host, session }, vm.journal, vm.log), { index, live: session !== undefined });
  vm.publish("vm.nic-added", { mac: nic.mac, index, live: session !== undefined });
  return nic;
}

/** The bridge must exist (and be a Linux bridge); the error names the request's field. */
async function checkBridge(def: Pick<VmDefinition, "nics">, index: number): Promise<void> {
  await checkBridges({ nics: def.nics.slice(index) }).catch((err: Error & { fields?: { field?: string } }) => {
    // The request's fields are the NIC's own: `nics.0.network.bridge` → `network.bridge`.
    if (err.fields?.field) err.fields.field = err.fields.field.replace(/^nics\.\d+\./, "");
    throw err;
  });
}

/** `ref` is the NIC's index in the definition or its MAC. */
export function findNic(vm: Vm, ref: string): number {
  const index = /^\d+$/.test(ref) ? Number(ref) : vm.definition.nics.findIndex((n) => n.mac === ref.toLowerCase());
  if (index < 0 || index >= vm.definition.nics.length) throw new DeviceNotFound(`VM "${vm.name}" has no NIC ${ref}`, { nic: ref });
  return index;
}

export async function removeNic(vm: Vm, host: HostContext, ref: string, timeoutSec: number, finishLater: FinishRemoval, run: ActionRun): Promise<void> {
  const index = findNic(vm, ref);
  const nic = vm.definition.nics[index]!;
  const session = liveSession(vm, "remove a NIC from");
  // qemu's ids and the tap's name follow the NIC's place in the list: taking one
  // out of the middle of a running VM would leave later NICs under ids the next
  // daemon would not find. A stopped VM renumbers at its next start.
  if (session && index !== vm.definition.nics.length - 1) {
    throw new VmStateConflict(vm.name, vm.settledState(), `hot-remove NIC ${index} (only the last NIC, ${vm.definition.nics.length - 1}, while it runs)`);
  }
  const id = nicDeviceId(index);
  await checkPending(vm, session, id);
  const taps = oneNic(vm.definition, index, nic);
  const steps: Step<Ctx>[] = [
    {
      name: "unplug",
      run: async (c) => {
        if (!c.session) return;
        await unplugOrLeavePending(vm, c.session, id, timeoutSec, finishLater);
        await releaseNicBackend(c.session, index);
        await removeShapingOf(vmTaps(taps));
        await removeVmTaps(taps, vm.log);
      },
    },
    { name: "record-definition", run: (c) => recordDefinition(c, (d) => ({ ...d, nics: d.nics.filter((_, i) => i !== index) })) },
  ];
  await run.journaled({ kind: "remove-nic", nic: nic.mac }, () => runSteps(steps, { vm, host, session }, vm.journal, vm.log), { nic, index, live: session !== undefined });
  vm.publish("vm.nic-removed", { mac: nic.mac, index, live: session !== undefined });
}

// ---- pending removals ----

/** A removal asked again while the guest still holds the device is refused; once it has let go, it is finished. */
async function checkPending(vm: Vm, session: QemuSession | undefined, id: string): Promise<void> {
  if (!vm.removals.has(id)) return;
  if (session && (await deviceExists(session, id))) {
    throw new DeviceRemovalPending(`the guest has not yet released ${id}; its removal is pending`, { device: id });
  }
  vm.removals.end(id, SUPERSEDED);
}

/** The abort reason of a pending removal that a new request for it finishes itself. */
const SUPERSEDED = "superseded";

async function unplugOrLeavePending(vm: Vm, session: QemuSession, id: string, timeoutSec: number, finishLater: FinishRemoval): Promise<void> {
  try {
    await unplugDevice(session, id, timeoutSec * 1000);
  } catch (err) {
    if (!(err instanceof DeviceRemovalTimeout) && !(err instanceof DeviceRemovalPending)) throw err;
    // The request stands in the guest; once it lets go (or qemu ends) the rest is done.
    if (!vm.removals.has(id)) {
      const pending = vm.removals.leave(id);
      // Also when qemu ends first (the VM's exit aborts every pending removal): the
      // removal was asked for, so the definition loses the device all the same.
      void whenReleased(session, id, pending).then(() => {
        if (pending.reason === SUPERSEDED) return;
        vm.removals.end(id, undefined, pending);
        finishLater();
      });
    }
    throw err;
  }
}

// ---- after a daemon restart ----

/**
 * Settles a device change a daemon restart cut short, by what qemu has: an add
 * whose device is in qemu is kept (and recorded), one whose device is not is
 * undone; a removal whose device is gone is finished, one whose device is still
 * there is asked for again. A stopped VM: the definition decides.
 */
export async function recoverHotplug(vm: Vm, host: HostContext, entry: JournalEntry, finishLater: FinishRemoval, run: ActionRun): Promise<void> {
  const { action, facts } = entry;
  vm.log.warn({ action, done: entry.done }, "settling a device change cut short by a daemon restart");
  // An add is settled here, journaled again so a second crash settles it the same way; a removal journals itself.
  if (action.kind === "add-disk" || action.kind === "add-nic") {
    await run.journaled(action, () => settle(vm, host, entry, finishLater, run), facts);
  } else {
    await settle(vm, host, entry, finishLater, run);
  }
}

async function settle(vm: Vm, host: HostContext, { action, facts }: JournalEntry, finishLater: FinishRemoval, run: ActionRun): Promise<void> {
  const session = vm.session?.connected ? vm.session : undefined;
  const ctx: Ctx = { vm, host, session };
  switch (action.kind) {
    case "add-disk": {
      const disk = action.disk;
      const inDef = vm.definition.disks.some((d) => d.name === disk.name);
      const keep = session ? await deviceExists(session, diskDeviceId(disk.name)) : inDef;
      if (keep) {
        if (!inDef) await recordDefinition(ctx, (d) => ({ ...d, disks: [...d.disks, disk] }));
        return;
      }
      if (session) await releaseDiskBackend(session, disk.name);
      if (inDef) await recordDefinition(ctx, (d) => ({ ...d, disks: d.disks.filter((x) => x.name !== disk.name) }));
      if (disk.image === undefined) await rm(diskPath(vm.paths, disk), { force: true });
      return;
    }
    case "remove-disk": {
      const disk = facts.disk ?? vm.definition.disks.find((d) => d.name === action.disk);
      if (!disk) return;
      if (!vm.definition.disks.some((d) => d.name === disk.name)) {
        if (disk.image === undefined) await rm(diskPath(vm.paths, disk), { force: true });
        return;
      }
      await removeDisk(vm, host, disk.name, DEFAULT_RELEASE_TIMEOUT_SEC, finishLater, run);
      return;
    }
    case "add-nic": {
      const nic = { ...action.nic, mac: action.nic.mac ?? "" };
      const inDef = vm.definition.nics.some((n) => n.mac === nic.mac);
      // The NIC was appended: its place is where it stands, or the end of the list if it never got there.
      const index = facts.index ?? (inDef ? vm.definition.nics.findIndex((n) => n.mac === nic.mac) : vm.definition.nics.length);
      const keep = session ? await deviceExists(session, nicDeviceId(index)) : inDef;
      if (keep) {
        if (!inDef) await recordDefinition(ctx, (d) => ({ ...d, nics: [...d.nics, nic] }));
        return;
      }
      if (session) await releaseNicBackend(session, index);
      await removeShapingOf(vmTaps(oneNic(vm.definition, index, nic)));
      await removeVmTaps(oneNic(vm.definition, index, nic), vm.log);
      if (inDef) await recordDefinition(ctx, (d) => ({ ...d, nics: d.nics.filter((n) => n.mac !== nic.mac) }));
      return;
    }
    case "remove-nic": {
      const mac = action.nic;
      if (!vm.definition.nics.some((n) => n.mac === mac)) return;
      await removeNic(vm, host, mac, DEFAULT_RELEASE_TIMEOUT_SEC, finishLater, run);
      return;
    }
    default:
      throw new Error(`not a device change: ${action.kind}`);
  }
}
