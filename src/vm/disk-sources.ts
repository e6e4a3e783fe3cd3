// The VM's own disks and where they come from: blank (sizeGiB), a qcow2 overlay on
// a base image in a pool (backingImage), or a copy of an image in a pool
// (importImage). All three live in the VM's directory and go with it; the base and
// the imported original stay the pool's. Sources are checked before anything is
// made, so a wrong path or size is a 400 naming the field and nothing changes.
import { ValidationFailed } from "../errors.js";
import type { QemuImg } from "../storage/qemu-img.js";
import type { StoragePools } from "../storage/storage-pools.js";
import type { DiskDefinition, VmDefinition } from "./definition.js";

const GiB = 1024 ** 3;

export interface DiskSource {
  kind: "backing" | "import";
  /** Absolute, resolved path of the base or of the image to copy. */
  file: string;
  /** Its format as qemu-img reads it. */
  format: string;
  virtualSize: number;
}

/** Whole sectors: qemu rounds odd sizes, and the guest must see what was asked for. */
export function diskBytes(sizeGiB: number): number {
  return Math.ceil((sizeGiB * GiB) / 512) * 512;
}

/** Per disk name, the checked source of each backing or import disk. */
export async function checkDiskSources(
  def: Pick<VmDefinition, "disks">,
  pools: StoragePools,
  qemuImg: QemuImg,
): Promise<Record<string, DiskSource>> {
  const out: Record<string, DiskSource> = {};
  for (const [i, disk] of def.disks.entries()) {
    const [kind, input, key] = disk.backingImage
      ? (["backing", disk.backingImage, "backingImage"] as const)
      : disk.importImage
        ? (["import", disk.importImage, "importImage"] as const)
        : [undefined, undefined, undefined];
    if (!kind) continue;
    const field = `disks.${i}.${key}`;
    const file = (await pools.resolveFile(input, field)).absolute;
    const info = await qemuImg.info(file);
    if (info.format !== "qcow2" && info.format !== "raw") {
      throw invalid(field, `image is ${info.format}; qcow2 and raw images are supported`);
    }
    if (disk.sizeGiB !== undefined && diskBytes(disk.sizeGiB) < info.virtualSize) {
      throw invalid(`disks.${i}.sizeGiB`, `must be at least the image's size, ${info.virtualSize} bytes`);
    }
    out[disk.name] = { kind, file, format: info.format, virtualSize: info.virtualSize };
  }
  return out;
}

/** Makes one of the VM's own disks at `file`. */
export async function makeOwnDisk(qemuImg: QemuImg, file: string, disk: DiskDefinition, source: DiskSource | undefined): Promise<void> {
  const size = disk.sizeGiB === undefined ? undefined : diskBytes(disk.sizeGiB);
  if (!source) {
    if (size !== undefined) await qemuImg.create(file, disk.format, size);
    return;
  }
  if (source.kind === "backing") {
    await qemuImg.createOverlay(file, source.file, source.format, size);
    return;
  }
  await qemuImg.convert(source.file, source.format, file, disk.format);
  if (size !== undefined && size > source.virtualSize) await qemuImg.resize(file, disk.format, size);
}

function invalid(field: string, message: string): ValidationFailed {
  return new ValidationFailed(`${field}: ${message}`, [{ field, message }]);
}
