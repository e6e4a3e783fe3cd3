// The durable record of host maintenance (<state-dir>/maintenance.json): whether
// the host is in maintenance, since when, and the evacuation's plan and progress.
// Written whole and atomically after every change, so a daemon that restarts finds
// the flag (starts stay refused from its first moment) and the evacuation to carry on.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { removeDurably, writeJsonAtomic } from "../../store/atomic-file.js";

const itemSchema = z.strictObject({
  vm: z.string(),
  memoryMiB: z.number().int().nonnegative(),
  state: z.enum(["pending", "migrating", "done", "failed", "skipped"]),
  destination: z.string().optional(),
  url: z.string().optional(),
  reason: z.string().optional(),
  job: z.string().optional(),
});

export const evacuationRecordSchema = z.strictObject({
  /** The evacuation's job id (kept across a restart). */
  job: z.uuid(),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  state: z.enum(["running", "succeeded", "incomplete", "cancelled"]),
  parallel: z.number().int().positive(),
  storage: z.enum(["shared", "copy"]),
  bandwidthMiBps: z.number().int().positive().optional(),
  /** The destinations with the room each had when the plan was made. */
  destinations: z.array(z.strictObject({ id: z.string(), url: z.string(), roomMiB: z.number() })),
  items: z.array(itemSchema),
});
export type EvacuationRecord = z.output<typeof evacuationRecordSchema>;

export const maintenanceRecordSchema = z.strictObject({
  since: z.string(),
  evacuation: evacuationRecordSchema.optional(),
});
export type MaintenanceRecord = z.output<typeof maintenanceRecordSchema>;

export class MaintenanceStore {
  readonly file: string;

  constructor(stateDir: string) {
    this.file = path.join(stateDir, "maintenance.json");
  }

  /** The record, or undefined when the host is not in maintenance. An unreadable record throws: the daemon must not guess. */
  async read(): Promise<MaintenanceRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw err;
    }
    return maintenanceRecordSchema.parse(JSON.parse(text));
  }

  async write(record: MaintenanceRecord): Promise<void> {
    await writeJsonAtomic(this.file, record);
  }

  /** Maintenance ended: no record means in service. */
  async clear(): Promise<void> {
    await removeDurably(this.file);
  }
}
