// What a migration destination keeps on disk per migration id, so that it can say
// after any restart what became of the guest it was sent: `prepared` (a qemu
// waits for RAM here; nothing has run), `committed` (the owner key is this
// host's and `cont` was issued: the guest runs here, never again at the source)
// or `aborted` (nothing here runs it, nor ever will). One JSON file per id; the
// codec and the pruning rule are pure so they can be checked alone.
import { z } from "zod";

export const migrationOutcomes = ["prepared", "committed", "aborted"] as const;
export type MigrationOutcome = (typeof migrationOutcomes)[number];

/** A migration id as the source makes it (a uuid): it names a file, so nothing else is accepted. */
export const migrationIdSchema = z.uuid();

export const outcomeRecordSchema = z.strictObject({
  id: migrationIdSchema,
  vm: z.string().min(1),
  uuid: z.uuid(),
  outcome: z.enum(migrationOutcomes),
  /** When the outcome was recorded. */
  at: z.iso.datetime(),
  /** When the source said it has acted on a final outcome (the record may go some time after). */
  acknowledgedAt: z.iso.datetime().optional(),
});
export type OutcomeRecord = z.output<typeof outcomeRecordSchema>;

export function encodeRecord(r: OutcomeRecord): string {
  return JSON.stringify(outcomeRecordSchema.parse(r), null, 2) + "\n";
}

/** A record read back; throws on anything but a whole, valid record (a torn write cannot happen: see atomic-file.ts). */
export function decodeRecord(text: string): OutcomeRecord {
  return outcomeRecordSchema.parse(JSON.parse(text));
}

/**
 * Which outcomes may follow which. `prepared` comes first; a final outcome never
 * changes, so a record cannot say `committed` once it said `aborted`, or the reverse.
 */
export function mayFollow(from: MigrationOutcome | undefined, to: MigrationOutcome): boolean {
  if (from === undefined) return true;
  if (from === "prepared") return true;
  return from === to;
}

export interface PruneRule {
  /** An acknowledged record is kept this long after the acknowledgement (late or repeated questions). */
  keepAcknowledgedMs: number;
  /** A final record never acknowledged is kept this long (a source down for days still gets its answer). */
  keepUnacknowledgedMs: number;
  /** At most this many final records; beyond it the oldest acknowledged, then the oldest of all, go. */
  maxFinal: number;
}

export const defaultPruneRule: PruneRule = {
  keepAcknowledgedMs: 10 * 60_000,
  keepUnacknowledgedMs: 7 * 24 * 3600_000,
  maxFinal: 256,
};

/**
 * The ids to remove. A `prepared` record is never pruned: the destination's
 * recovery turns it into a final one first.
 */
export function recordsToPrune(records: OutcomeRecord[], now: number, rule: PruneRule = defaultPruneRule): string[] {
  const final = records.filter((r) => r.outcome !== "prepared");
  const gone = new Set<string>();
  for (const r of final) {
    const age = r.acknowledgedAt ? now - Date.parse(r.acknowledgedAt) : now - Date.parse(r.at);
    if (age > (r.acknowledgedAt ? rule.keepAcknowledgedMs : rule.keepUnacknowledgedMs)) gone.add(r.id);
  }
  const left = final.filter((r) => !gone.has(r.id));
  // Acknowledged first, then by age: the records a source may still ask about stay longest.
  left.sort((a, b) => Number(!!b.acknowledgedAt) - Number(!!a.acknowledgedAt) || Date.parse(a.at) - Date.parse(b.at));
  for (const r of left.slice(0, Math.max(0, left.length - rule.maxFinal))) gone.add(r.id);
  return [...gone];
}
