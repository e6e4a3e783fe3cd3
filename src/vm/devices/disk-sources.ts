// The VM's own disks and where they come from: blank (sizeGiB), a qcow2 overlay on
// a base image in a pool (backingImage), or a copy of an image in a pool
// (importImage). All three live in the VM's directory and go with it; the base and
// the imported original stay the pool's. Sources are checked before anything is
// made, so a wrong path or size is a 400 naming the field and nothing changes.
// A source's format is declared (sourceFormat, else its name's extension), never
// read from its content, and the image is inspected before use (image-inspector).
import { UnsafeImage, ValidationFailed } from "../../errors.js";
import { ImageInspector, type InspectedImage } from "../../storage/image-inspector.js";
import { openExisting } from "../../storage/pool-files.js";
import type { ImageFormat, QemuImg } from "../../storage/qemu-img.js";
import type { StoragePools } from "../../storage/storage-pools.js";
import type { DiskDefinition, VmDefinition } from "../../definition/vm-definition.js";

const GiB = 1024 ** 3;

export interface DiskSource extends InspectedImage {
  kind: "backing" | "import";
  /** The request field that named it, for a refusal at the moment of use. */
  field: string;
  /** Absolute, resolved path of the base or of the image to copy. */
  file: string;
  format: ImageFormat;
}

/** Whole sectors: qemu rounds odd sizes, and the guest must see what was asked for. */
export function diskBytes(sizeGiB: number): number {
  return Math.ceil((sizeGiB * GiB) / 512) * 512;
}

/** The declared format of a backing or import file: sourceFormat, else what its name says. */
export function sourceFormatOf(disk: Pick<DiskDefinition, "sourceFormat">, file: string, field: string): ImageFormat {
  if (disk.sourceFormat) return disk.sourceFormat;
  const ext = /\.([^./]+)$/.exec(file)?.[1]?.toLowerCase();
  if (ext === "qcow2") return "qcow2";
  if (ext === "raw" || ext === "img") return "raw";
  const message = "the image's name does not say its format (.qcow2, .raw or .img): give sourceFormat qcow2 or raw";
  throw new ValidationFailed(`${field}: ${message}`, [{ field, message }]);
}

/**
 * Per disk name, the checked source of each backing or import disk; in-place
 * images (`image`) are inspected too, with the disk's own format.
 */
export async function checkDiskSources(
  def: Pick<VmDefinition, "disks">,
  pools: StoragePools,
  inspector = new ImageInspector(pools),
): Promise<Record<string, DiskSource>> {
  const out: Record<string, DiskSource> = {};
  for (const [i, disk] of def.disks.entries()) {
    if (disk.image !== undefined) {
      await checkInPlaceImage(pools, inspector, disk, `disks.${i}.image`, `disks.${i}.format`);
      continue;
    }
    const [kind, input, key] = disk.backingImage
      ? (["backing", disk.backingImage, "backingImage"] as const)
      : disk.importImage
        ? (["import", disk.importImage, "importImage"] as const)
        : disk.restoreFrom
          ? // A backup chain is copied flattened, as an import is: the inspector checks every image of it lies in a pool.
            (["import", disk.restoreFrom, "restoreFrom"] as const)
          : [undefined, undefined, undefined];
    if (!kind) continue;
    const field = `disks.${i}.${key}`;
    const file = (await pools.resolveFile(input, field)).absolute;
    const format = sourceFormatOf(disk, input, `disks.${i}.sourceFormat`);
    const inspected = await inspector.inspect(file, format, field, `disks.${i}.sourceFormat`);
    if (disk.sizeGiB !== undefined && diskBytes(disk.sizeGiB) < inspected.virtualSize) {
      throw invalid(`disks.${i}.sizeGiB`, `must be at least the image's size, ${inspected.virtualSize} bytes`);
    }
    out[disk.name] = { ...inspected, kind, field, file, format };
  }
  return out;
}

/** An existing pool image a VM is to write: inspected with the disk's format, and with no other hard link. */
export async function checkInPlaceImage(
  pools: StoragePools,
  inspector: ImageInspector,
  disk: Pick<DiskDefinition, "image" | "format">,
  field: string,
  formatField: string,
): Promise<string> {
  const file = (await pools.resolveFile(disk.image!, field)).absolute;
  await inspector.inspect(file, disk.format, field, formatField);
  const f = await openExisting(file, field);
  const { nlink } = await f.handle.stat().finally(() => f.handle.close());
  if (nlink > 1) {
    throw new UnsafeImage(field, `${disk.image} has ${nlink} hard links; an image a VM writes must have no other name`);
  }
  return file;
}

/**
 * Before qemu opens them again, every qcow2 disk of the VM is looked at once
 * more: its own disks belong to its qemu's uid, so a guest that took over its
 * qemu can have rewritten their headers (a backing file of `/etc/shadow`), and a
 * pool image used in place may have changed since the VM was defined. qemu
 * follows what those headers say, so they must still name only pool files.
 */
export async function checkDisksBeforeStart(
  def: Pick<VmDefinition, "disks">,
  files: Readonly<Record<string, string>>,
  pools: StoragePools,
  inspector = new ImageInspector(pools),
): Promise<void> {
  for (const [i, disk] of def.disks.entries()) {
    const file = files[disk.name];
    if (disk.format !== "qcow2" || file === undefined) continue;
    const field = disk.image !== undefined ? `disks.${i}.image` : `disks.${i}`;
    await inspector.inspect(file, "qcow2", field, `disks.${i}.format`);
  }
}

/** Makes one of the VM's own disks at `file` (in the VM's directory, which only the daemon writes). */
export async function makeOwnDisk(qemuImg: QemuImg, file: string, disk: DiskDefinition, source: DiskSource | undefined): Promise<void> {
  const size = disk.sizeGiB === undefined ? undefined : diskBytes(disk.sizeGiB);
  if (!source) {
    if (size !== undefined) await qemuImg.create(file, disk.format, size);
    return;
  }
  // The source's name must still hold the file that was inspected, where it was.
  const f = await openExisting(source.file, source.field);
  try {
    if (f.path !== source.file || f.dev !== source.dev || f.ino !== source.ino) {
      throw new UnsafeImage(source.field, `${source.file} was replaced after it was inspected`);
    }
    if (source.kind === "backing") {
      await qemuImg.createOverlay(file, source.file, source.format, size ?? source.virtualSize);
      return;
    }
    // qemu-img reads the inspected file itself, through the descriptor just checked.
    await qemuImg.convert(source.chain, file, disk.format, f.handle.fd);
  } finally {
    await f.handle.close();
  }
  if (size !== undefined && size > source.virtualSize) await qemuImg.resize(file, disk.format, size);
}

function invalid(field: string, message: string): ValidationFailed {
  return new ValidationFailed(`${field}: ${message}`, [{ field, message }]);
}
