// The point in time of a disk export: the disk's content and its dirty bitmap
// at one instant, copied into an image of their own (qemu writes it; a
// qemu-nbd serves it afterwards). See disk-export.ts for why a copy.
import { setTimeout as sleep } from "node:timers/promises";
import { StorageFailed } from "../../errors.js";
import type { QmpEvent } from "../../qmp/commands.js";
import type { QemuSession } from "../qemu-session.js";
import { BACKUP_BITMAP } from "./backup-record.js";
import { EXPORT_BITMAP } from "./export-record.js";

const QMP_MS = 30_000;
const POLL_MS = 100;

export async function virtualSize(session: QemuSession, node: string): Promise<number> {
  const nodes = (await session.executeUntyped("query-named-block-nodes", { flat: true }, QMP_MS)) as { "node-name": string; image: { "virtual-size": number } }[];
  const found = nodes.find((n) => n["node-name"] === node);
  if (!found) throw new StorageFailed(`qemu shows no node ${node}`);
  return found.image["virtual-size"];
}

/**
 * The disk's content and bitmap at one instant, into `image`: in one transaction
 * a disabled copy of the disk's bitmap on the image and the start of a full
 * backup (qemu copies a block out before the guest overwrites it). Resolves with
 * the bitmap's name, or undefined for a disk with no bitmap (raw).
 */
export async function copyPointInTime(session: QemuSession, disk: string, source: string, image: string, speedMiBps: number | undefined, preempted?: AbortSignal): Promise<string | undefined> {
  const node = `ex-${disk}`;
  const jobId = `export-${disk}`;
  await session.execute("blockdev-add", { driver: "qcow2", "node-name": node, file: { driver: "file", filename: image }, backing: null }, QMP_MS);
  const stopListening = new AbortController();
  try {
    let outcome: { error?: string; cancelled: boolean } | undefined;
    session.onEvent((ev: QmpEvent) => {
      if (ev.data?.device !== jobId) return;
      if (ev.event === "BLOCK_JOB_COMPLETED" || ev.event === "BLOCK_JOB_CANCELLED") {
        outcome = { cancelled: ev.event === "BLOCK_JOB_CANCELLED", ...(typeof ev.data.error === "string" ? { error: ev.data.error } : {}) };
      }
    }, stopListening.signal);
    const bitmap = (await hasBitmap(session, source)) ? EXPORT_BITMAP : undefined;
    const actions: Record<string, unknown>[] = [];
    if (bitmap) {
      actions.push({ type: "block-dirty-bitmap-add", data: { node, name: bitmap, persistent: true, disabled: true } });
      actions.push({ type: "block-dirty-bitmap-merge", data: { node, target: bitmap, bitmaps: [{ node: source, name: BACKUP_BITMAP }] } });
    }
    actions.push({ type: "blockdev-backup", data: { "job-id": jobId, device: source, target: node, sync: "full", "auto-dismiss": true, ...(speedMiBps ? { speed: Math.round(speedMiBps * 1024 * 1024) } : {}) } });
    await session.executeUntyped("transaction", { actions }, QMP_MS);
    let goneAt: number | undefined;
    let cancelSent = false;
    while (!outcome) {
      if (preempted?.aborted && !cancelSent) {
        cancelSent = true;
        await session.executeUntyped("block-job-cancel", { device: jobId, force: true }, QMP_MS).catch(() => {});
      }
      const running = ((await session.executeUntyped("query-block-jobs", undefined, QMP_MS)) as { device: string }[]).some((j) => j.device === jobId);
      if (!running) {
        goneAt ??= Date.now();
        if (Date.now() - goneAt > 5_000) throw new StorageFailed("the export's copy ended without saying how");
      }
      if (!outcome) await sleep(POLL_MS);
    }
    if (outcome.cancelled || outcome.error) throw new StorageFailed(`the export's copy of ${disk} failed: ${outcome.error ?? (cancelSent ? "the VM is being stopped" : "cancelled")}`);
    return bitmap;
  } finally {
    stopListening.abort();
    // Closing the node writes the bitmap into the image.
    await session.execute("blockdev-del", { "node-name": node }, QMP_MS).catch(() => {});
  }
}

async function hasBitmap(session: QemuSession, node: string): Promise<boolean> {
  const nodes = (await session.executeUntyped("query-named-block-nodes", { flat: true }, QMP_MS)) as { "node-name": string; "dirty-bitmaps"?: { name: string; inconsistent?: boolean }[] }[];
  const b = nodes.find((n) => n["node-name"] === node)?.["dirty-bitmaps"]?.find((x) => x.name === BACKUP_BITMAP);
  return b !== undefined && b.inconsistent !== true;
}
