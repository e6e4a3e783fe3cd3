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
  inserted?: { "node-name"?: string; file?: string };
}

interface NamedNode {
  "node-name": string;
  drv: string;
  file: string;
}

/** A disk's top node and the image it opened (absolute, normalised). */
export async function activeNode(session: QemuSession, disk: string): Promise<{ node: string; file: string }> {
  const blocks = (await session.executeUntyped("query-block", undefined, QUERY_MS)) as BlockInfo[];
  const id = diskDeviceId(disk);
  // With -device and no drive id, qemu names the device by its QOM path.
  const found = blocks.find((b) => b.qdev === id || b.qdev?.startsWith(`/machine/peripheral/${id}/`));
  const node = found?.inserted?.["node-name"];
  const file = found?.inserted?.file;
  const image = file === undefined ? undefined : imageFile(file);
  if (!node || !image) throw new Error(`qemu shows no medium for disk ${disk}`);
  return { node, file: image };
}

/**
 * The host file of a format node, from the name qemu reports: a plain path, or,
 * for a node opened with options a plain name cannot say (an overlay added with
 * backing null), `json:{...}` whose `file.filename` is the node's own file.
 */
export function imageFile(reported: string): string | undefined {
  if (!reported.startsWith("json:")) return path.resolve(reported);
  try {
    const spec = JSON.parse(reported.slice(5)) as { file?: { filename?: unknown } };
    return typeof spec.file?.filename === "string" ? path.resolve(spec.file.filename) : undefined;
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
