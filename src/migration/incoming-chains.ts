// A VM with snapshots arriving by storage copy: its snapshots.json comes with the
// definition, its lower layers were copied ahead (incoming-layers.ts), and each
// disk's top is made here empty over them, named as the source names it, so the
// machine plan opens the same chain and the mirror copies only the top.
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { ValidationFailed } from "../errors.js";
import type { HostContext } from "../vm/host-context.js";
import { backingNameFor, type SnapshotRecord } from "../vm/snapshots/snapshot-record.js";
import type { IncomingRequest } from "./migration-schema.js";
import { recordProblem } from "./layer-files.js";

/** Refuses (400, field `snapshots`) a record this host cannot take as it is. */
export function checkIncomingRecord(record: SnapshotRecord, req: Pick<IncomingRequest, "storage" | "migration" | "definition">): void {
  const refuse = (message: string) => {
    throw new ValidationFailed(`snapshots: ${message}`, [{ field: "snapshots", message }]);
  };
  if (req.storage !== "copy") refuse("a VM's snapshots migrate only with storage copy");
  if (!req.migration) refuse("layers are taken in only under a migration id");
  const own = req.definition.disks.filter((d) => d.image === undefined && d.format === "qcow2").map((d) => d.name);
  const problem = recordProblem(record, own);
  if (problem) refuse(problem);
}

/** The top of a disk's chain, empty, naming the copied layer below it by its relative name. */
export async function makeTop(host: Pick<HostContext, "qemuImg">, vmDir: string, chain: readonly string[], sizeBytes: number): Promise<void> {
  const top = chain[chain.length - 1]!;
  const below = chain[chain.length - 2]!;
  const file = path.join(vmDir, top);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o711 });
  await host.qemuImg.createOverlay(file, backingNameFor(top, below), "qcow2", sizeBytes);
}
