// The files a plan makes qemu open, for handing them over before qemu starts
// (qemu-files.ts checks and hands them over). Read from the plan's typed block
// nodes, kernel and chardev logs, so a new kind of device needs no code here.
import type { BlockdevNode, MachinePlan, SocketChardev } from "./plan-types.js";
import type { QemuFiles } from "./qemu-files.js";

export interface PlanFiles extends QemuFiles {
  /** Files qemu appends to (chardev logs): made before the start so they are the VM's. */
  logs: string[];
}

/** A host file a block node opens, and whether it (or a node above it) is read-only. */
export interface OpenedFile {
  filename: string;
  readOnly: boolean;
}

export function blockdevOpens(node: BlockdevNode, readOnlyAbove = false): OpenedFile[] {
  const readOnly = readOnlyAbove || ("read-only" in node && node["read-only"] === true);
  if (node.driver === "file") return [{ filename: node.filename, readOnly }];
  // A file named by node name is a node of its own, listed where it is made.
  return typeof node.file === "string" ? [] : blockdevOpens(node.file, readOnly);
}

export function planFiles(plan: MachinePlan): PlanFiles {
  const out: PlanFiles = { readWrite: [], readOnly: [], logs: [] };
  const chardevs: SocketChardev[] = [...plan.monitors, plan.serial];
  if (plan.kernel) out.readOnly.push(plan.kernel.kernel, ...(plan.kernel.initrd ? [plan.kernel.initrd] : []));
  for (const e of plan.entries) {
    if (e.kind === "chardev") chardevs.push(e.chardev);
    if (e.kind !== "blockdev") continue;
    for (const f of blockdevOpens(e.node)) (f.readOnly ? out.readOnly : out.readWrite).push(f.filename);
  }
  for (const c of chardevs) if (c.logfile !== undefined) out.logs.push(c.logfile);
  return out;
}
