// What of a VM's snapshots a storage-copy migration sends as files: the layers
// below each disk's top (read-only and frozen while the guest runs, so copied
// byte for byte before the destination's qemu starts) and the memory states.
// The top of each chain is not among them: the guest writes it, so it is
// mirrored live onto a fresh top the destination makes over the copied layers.
import { MAX_DISK_GIB } from "../definition/vm-definition.js";
import { vmstateName, type SnapshotRecord } from "../vm/snapshots/snapshot-record.js";

/** One path component of a layer's name: no empty, `.` or `..` component can pass. */
const COMPONENT = /^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)*$/;

/**
 * Whether `rel` may name a copied file inside the VM's directory: `disks/<file>`
 * or `snapshots/<file>`, one plain component, a qcow2 image or a memory state.
 */
export function isLayerName(rel: string): boolean {
  const parts = rel.split("/");
  if (parts.length !== 2 || (parts[0] !== "disks" && parts[0] !== "snapshots")) return false;
  const file = parts[1]!;
  return file.length <= 100 && COMPONENT.test(file) && (file.endsWith(".qcow2") || (parts[0] === "snapshots" && file.endsWith(".vmstate")));
}

/** The files to copy, relative to the VM's directory: every layer under a top, every memory state. */
export function layerFiles(record: SnapshotRecord): string[] {
  const out = new Set<string>();
  for (const chain of Object.values(record.chains)) for (const f of chain.slice(0, -1)) out.add(f);
  for (const s of record.snapshots) if (s.memory) out.add(vmstateName(s.name));
  return [...out];
}

/** The disks with layers under their top: mirrored with sync `top` onto a top made over the copied layers. */
export function chainedDisks(record: SnapshotRecord): Set<string> {
  return new Set(Object.entries(record.chains).filter(([, c]) => c.length > 1).map(([d]) => d));
}

/** The top of each chain: made empty on the destination over the copied layers, then mirrored. */
export function topFiles(record: SnapshotRecord): Set<string> {
  return new Set(Object.values(record.chains).map((c) => c[c.length - 1]!));
}

/**
 * Why a record from a source cannot be taken as it is (undefined: it can): every
 * name a plain layer name, every layer under a top and no top among them, each
 * snapshot's image one of its disk's layers, and the chains only of `disks`.
 */
export function recordProblem(record: SnapshotRecord, disks: readonly string[]): string | undefined {
  const tops = topFiles(record);
  for (const [disk, chain] of Object.entries(record.chains)) {
    if (!disks.includes(disk)) return `chains.${disk}: no such disk`;
    const bad = chain.find((f) => !isLayerName(f));
    if (bad) return `chains.${disk}: ${bad} is not a layer name`;
    if (new Set(chain).size !== chain.length) return `chains.${disk}: a layer appears twice`;
  }
  for (const f of layerFiles(record)) {
    if (!isLayerName(f)) return `${f} is not a layer name`;
    if (tops.has(f)) return `${f} is both a top and a layer under one`;
  }
  for (const snap of record.snapshots) {
    for (const [disk, f] of Object.entries(snap.disks)) {
      if (!record.chains[disk]?.slice(0, -1).includes(f)) return `snapshots.${snap.name}: ${f} is not a layer under disk ${disk}'s top`;
    }
  }
  return undefined;
}

/** No file is larger than the largest disk or memory a definition may ask for, with room for qcow2's metadata. */
export const LAYER_MAX_BYTES = Math.max(MAX_DISK_GIB * 1024 ** 3, 4 * 1024 ** 4) * 1.25;
