// What a VM's snapshots are, on disk: snapshots.json in the VM's directory holds
// each disk's chain of images (bottom first; the last is the one qemu writes) and
// each snapshot's frozen image per disk. It is the commit point of every snapshot
// operation: written atomically once the images it names exist, so an image that
// it does not name is left over from an operation cut short and may be removed.
//
//   disks/<disk>.qcow2           the disk as it was when its first snapshot was taken
//   snapshots/<disk>.<n>.qcow2   overlay n: the writes after a snapshot (backing: the layer below)
//   snapshots/<snap>.vmstate     the RAM and device state of a snapshot with memory
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { writeJsonAtomic } from "../../store/atomic-file.js";
import { diskPath, type VmPaths } from "../../store/vm-paths.js";
import type { DiskDefinition } from "../../definition/vm-definition.js";

export const SNAPSHOT_NAME_PATTERN = /^[a-z][a-z0-9-]{0,39}$/;

const relFile = z.string().regex(/^(disks|snapshots)\/[a-z0-9.-]+$/);

export const snapshotSchema = z.strictObject({
  name: z.string().regex(SNAPSHOT_NAME_PATTERN),
  createdAt: z.string(),
  /** The RAM and device state were saved too (snapshots/<name>.vmstate). */
  memory: z.boolean(),
  /** The snapshot taken before this one, if it still exists. */
  parent: z.string().optional(),
  /** Per disk, the image frozen at this snapshot (relative to the VM's directory). */
  disks: z.record(z.string(), relFile),
});

export const snapshotRecordSchema = z.strictObject({
  /** Number of the next overlay: never reused, so an image name means one image for ever. */
  next: z.number().int().nonnegative(),
  /** Per disk that has overlays, its images bottom first; the last is the disk qemu writes. */
  chains: z.record(z.string(), z.array(relFile).min(1)),
  /** Oldest first. */
  snapshots: z.array(snapshotSchema),
});

export type Snapshot = z.output<typeof snapshotSchema>;
export type SnapshotRecord = z.output<typeof snapshotRecordSchema>;

export const emptyRecord = (): SnapshotRecord => ({ next: 1, chains: {}, snapshots: [] });

export function recordFile(paths: Pick<VmPaths, "dir">): string {
  return path.join(paths.dir, "snapshots.json");
}

export function snapshotsDir(paths: Pick<VmPaths, "dir">): string {
  return path.join(paths.dir, "snapshots");
}

export async function readSnapshotRecord(paths: Pick<VmPaths, "dir">): Promise<SnapshotRecord> {
  let text: string;
  try {
    text = await readFile(recordFile(paths), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return emptyRecord();
    throw err;
  }
  return snapshotRecordSchema.parse(JSON.parse(text));
}

export async function writeSnapshotRecord(paths: Pick<VmPaths, "dir">, record: SnapshotRecord): Promise<void> {
  await writeJsonAtomic(recordFile(paths), snapshotRecordSchema.parse(record));
}

/** A disk's images, bottom first, relative to the VM's directory. */
export function chainOf(record: SnapshotRecord, paths: VmPaths, disk: Pick<DiskDefinition, "name" | "format">): string[] {
  return record.chains[disk.name] ?? [path.relative(paths.dir, diskPath(paths, disk))];
}

/** The image qemu writes for a disk: the top of its chain. */
export function activeImage(record: SnapshotRecord, paths: VmPaths, disk: Pick<DiskDefinition, "name" | "format">): string {
  const chain = chainOf(record, paths, disk);
  return path.join(paths.dir, chain[chain.length - 1]!);
}

export function overlayName(disk: string, n: number): string {
  return `snapshots/${disk}.${n}.qcow2`;
}

export function vmstateName(snapshot: string): string {
  return `snapshots/${snapshot}.vmstate`;
}

/** Every file the record names (images and memory states), relative to the VM's directory. */
export function referencedFiles(record: SnapshotRecord): Set<string> {
  const out = new Set<string>();
  for (const chain of Object.values(record.chains)) for (const f of chain) out.add(f);
  for (const s of record.snapshots) {
    for (const f of Object.values(s.disks)) out.add(f);
    if (s.memory) out.add(vmstateName(s.name));
  }
  return out;
}

/** How a layer names the one below it in its header: relative to its own directory, so the VM's directory can move. */
export function backingNameFor(layer: string, below: string): string {
  return path.relative(path.dirname(layer), below);
}
