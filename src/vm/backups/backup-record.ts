// A VM's backups, per disk, in backups.json in its directory: each finished
// backup with its checkpoint (the image qemu wrote for the disk then, where the
// dirty bitmap lives), and a pending entry written before a backup job begins.
// A pending entry still there later means a backup was cut short (the daemon
// killed mid-copy): qemu may have finished it and cleared the bitmap's bits
// without the record saying so, so the next backup is a full one.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { writeJsonAtomic } from "../../store/atomic-file.js";
import type { VmPaths } from "../../store/vm-paths.js";

/** The persistent dirty bitmap each of the VM's own qcow2 disks carries on its top image. */
export const BACKUP_BITMAP = "vmh-backup";

export const backupEntrySchema = z.strictObject({
  id: z.string(),
  disk: z.string(),
  mode: z.enum(["full", "incremental"]),
  /** The pool path asked for, and the absolute file made. */
  target: z.string(),
  file: z.string(),
  /** The backup this one's image is an overlay of (incremental). */
  parent: z.string().optional(),
  createdAt: z.string(),
  /** Bytes the job copied. */
  bytes: z.number(),
  /** The disk's top image when the backup's point in time was taken (relative to the VM's directory, or absolute). */
  checkpoint: z.strictObject({ image: z.string(), bitmap: z.string() }),
});

export const backupRecordSchema = z.strictObject({
  backups: z.array(backupEntrySchema),
  /** Backups begun and not yet recorded, by disk. */
  pending: z.record(z.string(), z.string()),
});

export type BackupEntry = z.output<typeof backupEntrySchema>;
export type BackupRecord = z.output<typeof backupRecordSchema>;

const recordFile = (paths: Pick<VmPaths, "dir">): string => path.join(paths.dir, "backups.json");

export async function readBackupRecord(paths: Pick<VmPaths, "dir">): Promise<BackupRecord> {
  let text: string;
  try {
    text = await readFile(recordFile(paths), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { backups: [], pending: {} };
    throw err;
  }
  return backupRecordSchema.parse(JSON.parse(text));
}

export async function writeBackupRecord(paths: Pick<VmPaths, "dir">, record: BackupRecord): Promise<void> {
  await writeJsonAtomic(recordFile(paths), backupRecordSchema.parse(record));
}

/** The disk's backups, oldest first. */
export function backupsOf(record: BackupRecord, disk: string): BackupEntry[] {
  return record.backups.filter((b) => b.disk === disk);
}
