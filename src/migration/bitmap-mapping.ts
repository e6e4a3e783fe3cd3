// Which node each disk's dirty bitmaps leave from and arrive at. qemu sends a
// bitmap under its node's name unless told otherwise; the destination's qemu,
// started from the machine plan, names each disk's top format node `d-<disk>`,
// while here a snapshot taken live has put a node of another name on top. So the
// source names every disk's top node for qemu (`block-bitmap-mapping`) with the
// destination's name as its alias; the destination keeps qemu's default (alias =
// node name). Lower layers' bitmaps are in their files, which are copied as they are.
import { diskBackendIds } from "../qemu/plan-devices.js";
import type { QemuSession } from "../vm/qemu-session.js";
import { activeNode } from "../vm/snapshots/block-graph.js";

const QMP_MS = 30_000;

export interface BitmapMapping {
  "node-name": string;
  alias: string;
  bitmaps: { name: string; alias: string }[];
}

interface NodeBitmaps {
  "node-name": string;
  "dirty-bitmaps"?: { name: string }[];
}

/** The mapping from qemu's graph as it is now; `nodes` given for a test of the pure part. */
export function mappingFor(tops: { disk: string; node: string }[], nodes: readonly NodeBitmaps[]): BitmapMapping[] {
  return tops.map(({ disk, node }) => ({
    "node-name": node,
    alias: diskBackendIds(disk).formatNode,
    bitmaps: (nodes.find((n) => n["node-name"] === node)?.["dirty-bitmaps"] ?? []).map((b) => ({ name: b.name, alias: b.name })),
  }));
}

export async function readBitmapMapping(session: QemuSession, disks: readonly string[]): Promise<BitmapMapping[]> {
  const tops: { disk: string; node: string }[] = [];
  for (const disk of disks) tops.push({ disk, node: (await activeNode(session, disk)).node });
  const nodes = (await session.executeUntyped("query-named-block-nodes", { flat: true }, QMP_MS)) as NodeBitmaps[];
  return mappingFor(tops, nodes);
}
