// The files a definition names, resolved to absolute paths inside storage pools.
// Done before anything is created or started, so a bad path is a 400 with the
// field named and nothing changes.
import type { MachineFiles } from "../qemu/plan-types.js";
import type { VmPaths } from "../store/vm-paths.js";
import { activeImage, readSnapshotRecord } from "./snapshots/snapshot-record.js";
import type { StoragePools } from "../storage/storage-pools.js";
import type { VmCreateRequest, VmDefinition } from "../definition/vm-definition.js";

export async function resolveVmFiles(
  def: Pick<VmDefinition, "boot" | "disks" | "cdrom">,
  pools: StoragePools,
  paths: VmPaths,
): Promise<MachineFiles> {
  const files: MachineFiles = { disks: {} };
  if (def.boot.kernel) files.kernel = (await pools.resolveFile(def.boot.kernel, "boot.kernel")).absolute;
  if (def.boot.initrd) files.initrd = (await pools.resolveFile(def.boot.initrd, "boot.initrd")).absolute;
  if (def.cdrom?.image) files.cdrom = (await pools.resolveFile(def.cdrom.image, "cdrom.image")).absolute;
  // A disk with snapshots is written at the top of its chain of overlays (src/vm/snapshots/).
  const record = await readSnapshotRecord(paths);
  for (const [i, disk] of def.disks.entries()) {
    files.disks[disk.name] = disk.image
      ? (await pools.resolveFile(disk.image, `disks.${i}.image`)).absolute
      : activeImage(record, paths, disk);
  }
  return files;
}

export type { VmCreateRequest };
