// The dirty bitmap side of a backup: what qemu shows of the bitmap on the disk's
// top image, the decision full or incremental, the QMP actions that start the
// copy with the bitmap (a full backup adds or resets it at the same instant, in
// one transaction; an incremental one copies what it marks), and the record of
// the backup once done. With bitmap-mode on-success qemu clears only the bits it
// copied, and only if the job succeeds: a failed backup leaves the bitmap whole.
import path from "node:path";
import { stat } from "node:fs/promises";
import type { QemuSession } from "../qemu-session.js";
import { activeNode } from "../snapshots/block-graph.js";
import type { Vm } from "../vm.js";
import { decideMode, type BitmapState, type ModeDecision } from "./backup-mode.js";
import { BACKUP_BITMAP, readBackupRecord, writeBackupRecord, type BackupEntry } from "./backup-record.js";

const QMP_MS = 30_000;

interface NodeBitmaps {
  "node-name": string;
  "dirty-bitmaps"?: { name: string; recording?: boolean; inconsistent?: boolean }[];
}

export interface Checkpoint extends ModeDecision {
  /** The disk's top node and its image (relative to the VM's directory when inside it). */
  node: string;
  image: string;
  bitmap: BitmapState;
}

/**
 * `locate` finds a backup's image on this host by its pool path: after a
 * migration the record came from another host, whose pools may sit elsewhere.
 */
export async function planCheckpoint(
  vm: Vm,
  session: QemuSession,
  disk: string,
  asked: { mode: "full" | "incremental"; since?: string },
  locate: (poolPath: string) => Promise<string | undefined>,
): Promise<Checkpoint> {
  const top = await activeNode(session, disk);
  const nodes = (await session.executeUntyped("query-named-block-nodes", { flat: true }, QMP_MS)) as NodeBitmaps[];
  const b = nodes.find((n) => n["node-name"] === top.node)?.["dirty-bitmaps"]?.find((x) => x.name === BACKUP_BITMAP);
  const bitmap: BitmapState = { present: b !== undefined, inconsistent: b?.inconsistent === true, recording: b?.recording !== false };
  const rel = path.relative(vm.paths.dir, top.file);
  const image = rel.startsWith("..") ? top.file : rel;
  const record = await readBackupRecord(vm.paths);
  const here = new Map<string, string>();
  for (const e of record.backups.filter((b) => b.disk === disk)) {
    const file = await locate(e.target);
    if (file && (await stat(file).then((s) => s.isFile(), () => false))) here.set(e.id, file);
  }
  const decision = decideMode(asked, record, disk, { bitmap, topImage: image, parentExists: (e) => here.has(e.id) });
  const parent = decision.parent ? { ...decision.parent, file: here.get(decision.parent.id)! } : undefined;
  return { ...decision, ...(parent ? { parent } : {}), node: top.node, image, bitmap };
}

/**
 * Makes the bitmap ready (a full backup: an inconsistent one removed, a missing
 * one added in the transaction) and starts the copy, as one transaction.
 */
export async function startBackup(session: QemuSession, cp: Checkpoint, backup: Record<string, unknown>): Promise<void> {
  const actions: Record<string, unknown>[] = [];
  let present = cp.bitmap.present;
  if (cp.mode === "full" && present && cp.bitmap.inconsistent) {
    await session.executeUntyped("block-dirty-bitmap-remove", { node: cp.node, name: BACKUP_BITMAP }, QMP_MS);
    present = false;
  }
  if (!present) actions.push({ type: "block-dirty-bitmap-add", data: { node: cp.node, name: BACKUP_BITMAP, persistent: true } });
  const sync = cp.mode === "incremental" ? "incremental" : "full";
  actions.push({ type: "blockdev-backup", data: { ...backup, sync, bitmap: BACKUP_BITMAP, "bitmap-mode": "on-success" } });
  await session.executeUntyped("transaction", { actions }, QMP_MS);
}

/** Written before the copy starts: a backup cut short is then known. */
export async function markPending(vm: Vm, disk: string, id: string): Promise<void> {
  const record = await readBackupRecord(vm.paths);
  record.pending[disk] = id;
  await writeBackupRecord(vm.paths, record);
}

export async function recordBackup(vm: Vm, entry: BackupEntry | undefined, disk: string): Promise<void> {
  const record = await readBackupRecord(vm.paths);
  delete record.pending[disk];
  if (entry) record.backups.push(entry);
  await writeBackupRecord(vm.paths, record);
}
