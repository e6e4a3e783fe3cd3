// What each snapshot operation does to the record, as pure functions: the new
// record and the images to make or merge. The operations (snapshot-actions.ts)
// make the images, write the record (the commit point), then remove what it no
// longer names. Snapshots form one line: a revert drops the ones taken after it.
import { SnapshotExists, SnapshotNotFound, TooManySnapshots } from "../../errors.js";
import { overlayName, type Snapshot, type SnapshotRecord } from "./snapshot-record.js";

/** A new empty overlay to make: `file` on top of `below` (both relative to the VM's directory). */
export interface NewOverlay {
  disk: string;
  file: string;
  below: string;
}

/** A merge of `top` into `base`, the layer under it; `above` is the layer over `top`, or undefined if `top` is the disk qemu writes. */
export interface Merge {
  disk: string;
  base: string;
  top: string;
  above: string | undefined;
}

const clone = (r: SnapshotRecord): SnapshotRecord => JSON.parse(JSON.stringify(r)) as SnapshotRecord;

/** `chains`: every disk to snapshot with its current chain, bottom first. */
export function planCreate(
  record: SnapshotRecord,
  chains: Record<string, string[]>,
  req: { vm: string; name: string; memory: boolean; max: number; now: string },
): { record: SnapshotRecord; overlays: NewOverlay[] } {
  if (record.snapshots.some((s) => s.name === req.name)) throw new SnapshotExists(req.vm, req.name);
  if (record.snapshots.length >= req.max) throw new TooManySnapshots(req.vm, req.max);
  const next = clone(record);
  const overlays: NewOverlay[] = [];
  const frozen: Record<string, string> = {};
  for (const [disk, chain] of Object.entries(chains)) {
    const below = chain[chain.length - 1]!;
    const file = overlayName(disk, next.next++);
    overlays.push({ disk, file, below });
    frozen[disk] = below;
    next.chains[disk] = [...chain, file];
  }
  const parent = record.snapshots[record.snapshots.length - 1]?.name;
  const snap: Snapshot = { name: req.name, createdAt: req.now, memory: req.memory, disks: frozen, ...(parent ? { parent } : {}) };
  next.snapshots.push(snap);
  return { record: next, overlays };
}

/**
 * Every disk the snapshot froze gets a new empty overlay on its frozen image;
 * the layers above that image, and the snapshots taken after this one, go.
 */
export function planRevert(record: SnapshotRecord, vm: string, name: string): { record: SnapshotRecord; overlays: NewOverlay[]; snapshot: Snapshot } {
  const index = record.snapshots.findIndex((s) => s.name === name);
  const snap = record.snapshots[index];
  if (!snap) throw new SnapshotNotFound(vm, name);
  const next = clone(record);
  next.snapshots = next.snapshots.slice(0, index + 1);
  const overlays: NewOverlay[] = [];
  for (const [disk, frozen] of Object.entries(snap.disks)) {
    const chain = next.chains[disk];
    const at = chain?.indexOf(frozen) ?? -1;
    if (!chain || at < 0) throw new Error(`snapshot ${name}: ${frozen} is not in disk ${disk}'s chain`);
    const file = overlayName(disk, next.next++);
    overlays.push({ disk, file, below: frozen });
    next.chains[disk] = [...chain.slice(0, at + 1), file];
  }
  return { record: next, overlays, snapshot: snap };
}

/**
 * The layer over each disk's frozen image is merged down into it (block-commit):
 * the snapshot's own view is then gone, every later one is unchanged.
 */
export function planDelete(record: SnapshotRecord, vm: string, name: string): { record: SnapshotRecord; merges: Merge[]; snapshot: Snapshot } {
  const index = record.snapshots.findIndex((s) => s.name === name);
  const snap = record.snapshots[index];
  if (!snap) throw new SnapshotNotFound(vm, name);
  const next = clone(record);
  const merges: Merge[] = [];
  for (const [disk, base] of Object.entries(snap.disks)) {
    const chain = next.chains[disk];
    const at = chain?.indexOf(base) ?? -1;
    if (!chain || at < 0 || at + 1 >= chain.length) throw new Error(`snapshot ${name}: ${base} has no layer over it in disk ${disk}'s chain`);
    const top = chain[at + 1]!;
    merges.push({ disk, base, top, above: chain[at + 2] });
    next.chains[disk] = chain.filter((f) => f !== top);
    for (const s of next.snapshots) if (s.disks[disk] === top) s.disks[disk] = base;
  }
  next.snapshots.splice(index, 1);
  const after = next.snapshots[index];
  if (after) {
    if (snap.parent) after.parent = snap.parent;
    else delete after.parent;
  }
  return { record: next, merges, snapshot: snap };
}
