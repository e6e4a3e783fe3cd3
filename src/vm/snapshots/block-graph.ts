// What qemu's block graph holds now, read back over QMP: the node a disk's
// device writes through, and the node that opened a given image. A snapshot
// moves a disk's top node, and after a restart the images below the top are
// opened by qemu from their headers with names qemu picks, so both are asked
// of qemu rather than derived from a naming rule.
import path from "node:path";
import { diskDeviceId } from "../../qemu/plan-devices.js";
import type { QemuSession } from "../qemu-session.js";

const QUERY_MS = 10_000;

interface BlockInfo {
  qdev?: string;
  inserted?: { "node-name"?: string; drv?: string; file?: string };
}

interface NamedNode {
  "node-name": string;
  drv: string;
  file: string;
}

interface BlockGraph {
  nodes: { id: number; type: string; name: string }[];
  edges: { parent: number; child: number; name: string }[];
}

/**
 * A disk's nodes: `root`, the one its device is attached to (what block-commit and
 * blockdev-mirror must name: qemu wants a root node; and block_resize, whose new
 * size reaches the device only through it), and `node`, the top format node of
 * its chain (what blockdev-snapshot, a backup and a bitmap name)
 * with the image it opened. The root is the VM's throttle filter over the chain,
 * or, in a qemu started by an earlier vmhostd, the top format node itself, with
 * the throttle under it (`throttled` false: an overlay put on that top needs a
 * filter of its own).
 */
export interface DiskNodes {
  root: string;
  node: string;
  file: string;
  throttled: boolean;
}

/** A disk's root and top format node now, read from qemu's graph (a snapshot or a merge moves the top). */
export async function activeNode(session: QemuSession, disk: string): Promise<DiskNodes> {
  const blocks = (await session.executeUntyped("query-block", undefined, QUERY_MS)) as BlockInfo[];
  const id = diskDeviceId(disk);
  // With -device and no drive id, qemu names the device by its QOM path.
  const found = blocks.find((b) => b.qdev === id || b.qdev?.startsWith(`/machine/peripheral/${id}/`));
  const root = found?.inserted?.["node-name"];
  if (!root) throw new Error(`qemu shows no medium for disk ${disk}`);
  const throttled = found?.inserted?.drv === "throttle";
  const node = throttled ? await childOf(session, root) : root;
  const nodes = (await session.executeUntyped("query-named-block-nodes", { flat: true }, QUERY_MS)) as NamedNode[];
  const reported = nodes.find((n) => n["node-name"] === node)?.file;
  const image = reported === undefined ? undefined : imageFile(reported);
  if (!node || !image) throw new Error(`qemu shows no image under disk ${disk}'s filter`);
  return { root, node, file: image, throttled };
}

/** The node a filter reads through (its `file` child), skipping qemu's own implicit filters (a job's). */
async function childOf(session: QemuSession, parent: string): Promise<string | undefined> {
  const graph = (await session.executeUntyped("x-debug-query-block-graph", undefined, QUERY_MS)) as BlockGraph;
  let at = graph.nodes.find((n) => n.name === parent);
  for (let hops = 0; at && hops < 8; hops++) {
    const edge = graph.edges.find((e) => e.parent === at!.id && (e.name === "file" || e.name === "backing"));
    const child = edge ? graph.nodes.find((n) => n.id === edge.child) : undefined;
    // Implicit nodes (a mirror's or a commit's filter) are named by qemu with a leading '#'.
    if (!child || !child.name.startsWith("#")) return child?.name;
    at = child;
  }
  return undefined;
}

/**
 * The host file of a format node, from the name qemu reports: a plain path, or,
 * for a node opened with options a plain name cannot say (an overlay added with
 * backing null), `json:{...}` whose `file.filename` is the node's own file.
 */
export function imageFile(reported: string): string | undefined {
  if (!reported.startsWith("json:")) return path.resolve(reported);
  try {
    // The file under a filter (an overlay made over a throttle of its own) is one level further down.
    type Spec = { file?: Spec | string; filename?: unknown };
    let at = (JSON.parse(reported.slice(5)) as Spec).file;
    for (let depth = 0; typeof at === "object" && depth < 4; depth++) {
      if (typeof at.filename === "string") return path.resolve(at.filename);
      at = at.file;
    }
    return undefined;
  } catch {
    return undefined;
  }
}

/** The format node (qcow2) that opened `file`, if qemu has one. */
export async function nodeOfImage(session: QemuSession, file: string): Promise<string | undefined> {
  const nodes = (await session.executeUntyped("query-named-block-nodes", { flat: true }, QUERY_MS)) as NamedNode[];
  const want = path.resolve(file);
  return nodes.find((n) => n.drv === "qcow2" && imageFile(n.file) === want)?.["node-name"];
}

/** qemu's block jobs now, as query-block-jobs lists them. */
export interface BlockJobInfo {
  device: string;
  type: string;
  len: number;
  offset: number;
  ready: boolean;
  status: string;
  error?: string;
}

export async function blockJobs(session: QemuSession): Promise<BlockJobInfo[]> {
  return (await session.executeUntyped("query-block-jobs", undefined, QUERY_MS)) as BlockJobInfo[];
}
