// Growing one of a VM's own disks = check (the disk is the VM's, the size only
// grows) → resize the image (through QMP block_resize on the disk's format node
// while qemu runs, so the guest's virtio-blk sees the new capacity at once;
// qemu-img when stopped) → record the new size in the definition. Disks only grow:
// shrinking would cut off whatever the guest keeps at the end. Journaled with the
// size asked for: a daemon restarted in the middle resizes again, a no-op if done.
import { stat } from "node:fs/promises";
import { DeviceNotFound, ValidationFailed } from "../../errors.js";
import type { RunAs } from "../../storage/qemu-img.js";
import { diskPath } from "../../store/vm-paths.js";
import type { DiskDefinition, VmDefinition } from "../../definition/vm-definition.js";
import { diskBytes } from "../devices/disk-sources.js";
import type { HostContext } from "../host-context.js";
import { runSteps, type Step } from "../operation-steps.js";
import type { ActionRun } from "./action-run.js";
import type { Vm } from "../vm.js";
import { activeNode } from "../snapshots/block-graph.js";
import { activeImage, readSnapshotRecord } from "../snapshots/snapshot-record.js";

/** Resizing is metadata only, but may wait for in-flight I/O to drain. */
const RESIZE_TIMEOUT_MS = 30_000;

interface ResizeContext {
  vm: Vm;
  host: HostContext;
  disk: DiskDefinition;
  sizeGiB: number;
  bytes: number;
  currentBytes?: number;
  /** Who qemu-img runs as: the VM's uid once its qemu has written the disk. */
  as?: RunAs;
}

const steps: Step<ResizeContext>[] = [
  {
    name: "check-size",
    journaled: false,
    run: async (c) => {
      c.as = await guestWriter(c);
      c.currentBytes = (await c.host.qemuImg.info(activeImage(await readSnapshotRecord(c.vm.paths), c.vm.paths, c.disk), c.disk.format, c.as)).virtualSize;
      if (c.bytes < c.currentBytes) {
        const message = `must be at least the disk's size, ${c.currentBytes} bytes (${c.currentBytes / 1024 ** 3} GiB): disks only grow`;
        throw new ValidationFailed(`sizeGiB: ${message}`, [{ field: "sizeGiB", message }]);
      }
    },
  },
  {
    name: "resize",
    run: async (c) => {
      if (c.bytes === c.currentBytes) return;
      const session = c.vm.session;
      if (session) {
        // The device's own node (the throttle filter, which passes it to the chain's top): qemu tells the
        // device of a new size only through the node it is attached to.
        const { root } = await activeNode(session, c.disk.name);
        await session.execute("block_resize", { "node-name": root, size: c.bytes }, RESIZE_TIMEOUT_MS);
      } else {
        await c.host.qemuImg.resize(activeImage(await readSnapshotRecord(c.vm.paths), c.vm.paths, c.disk), c.disk.format, c.bytes, c.as);
      }
    },
  },
  {
    name: "record-definition",
    run: async (c) => {
      await c.vm.changeDefinition(c.host.store, (def): VmDefinition => ({
        ...def,
        disks: def.disks.map((d) => (d.name === c.disk.name ? { ...d, sizeGiB: c.sizeGiB } : d)),
      }));
    },
  },
];

/**
 * A disk that has been handed to the VM's qemu holds whatever that qemu wrote,
 * its qcow2 metadata included, so it is read as the VM's uid, never as root. A
 * disk no qemu has opened yet is still root's own making.
 */
async function guestWriter(c: ResizeContext): Promise<RunAs | undefined> {
  const identity = await c.host.qemuUsers.identityFor(c.vm.name);
  if (!identity) return undefined;
  const owner = (await stat(diskPath(c.vm.paths, c.disk))).uid;
  return owner === identity.uid ? identity : undefined;
}

export async function resizeDisk(vm: Vm, host: HostContext, diskName: string, sizeGiB: number, run: ActionRun): Promise<void> {
  const disk = vm.definition.disks.find((d) => d.name === diskName);
  if (!disk) throw new DeviceNotFound(`VM "${vm.name}" has no disk "${diskName}"`, { vm: vm.name, disk: diskName });
  if (disk.image) {
    const message = `uses the image "${disk.image}" in a pool, which is not the VM's to resize`;
    throw new ValidationFailed(`disk: ${message}`, [{ field: "disk", message }]);
  }
  await run.journaled({ kind: "resize-disk", disk: diskName, sizeGiB }, () =>
    runSteps(steps, { vm, host, disk, sizeGiB, bytes: diskBytes(sizeGiB) }, vm.journal, vm.log),
  );
  vm.publish("vm.disk-resized", { disk: diskName, sizeGiB });
}
