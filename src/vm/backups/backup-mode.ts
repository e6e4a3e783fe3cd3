// Whether a backup asked for as incremental can be one: only if the dirty
// bitmap has recorded every write since the backup it builds on. Anything that
// makes that uncertain makes the backup full, and the job says why.
import type { BackupEntry, BackupRecord } from "./backup-record.js";
import { backupsOf } from "./backup-record.js";

/** What qemu shows of the bitmap on the disk's top image now. */
export interface BitmapState {
  present: boolean;
  /** qemu found it marked in use in the image: the qemu that wrote it ended without saving it. */
  inconsistent: boolean;
  recording: boolean;
}

export interface ModeDecision {
  mode: "full" | "incremental";
  /** The backup the incremental one is an overlay of. */
  parent?: BackupEntry;
  /** Why a backup asked for as incremental is full. */
  reason?: string;
}

export function decideMode(
  asked: { mode: "full" | "incremental"; since?: string },
  record: BackupRecord,
  disk: string,
  facts: { bitmap: BitmapState; topImage: string; parentExists: (b: BackupEntry) => boolean },
): ModeDecision {
  if (asked.mode === "full") return { mode: "full" };
  const full = (reason: string): ModeDecision => ({ mode: "full", reason });
  const mine = backupsOf(record, disk);
  const latest = mine.at(-1);
  if (record.pending[disk]) return full(`backup ${record.pending[disk]} was cut short; the dirty bitmap may no longer match the record`);
  if (!latest) return full("the disk has no earlier backup");
  if (asked.since !== undefined && !mine.some((b) => b.id === asked.since)) return full(`no backup ${asked.since} of this disk`);
  if (asked.since !== undefined && asked.since !== latest.id) return full(`the dirty bitmap counts from the latest backup ${latest.id}, not from ${asked.since}`);
  if (latest.checkpoint.image !== facts.topImage) return full("the disk's image chain changed since the latest backup (a snapshot, revert or merge)");
  if (!facts.bitmap.present) return full("the disk has no dirty bitmap (its qemu never saved one)");
  if (facts.bitmap.inconsistent) return full("the dirty bitmap is inconsistent: the qemu that recorded it ended without saving it");
  if (!facts.bitmap.recording) return full("the dirty bitmap is not recording");
  if (!facts.parentExists(latest)) return full(`the image of backup ${latest.id} is gone`);
  return { mode: "incremental", parent: latest };
}
