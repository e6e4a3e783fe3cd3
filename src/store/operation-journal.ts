// The journal of a VM's operation in flight: the action is written before the
// first step acts and the progress after each step, so a daemon restarted after
// a crash knows what was under way and can finish or undo it. An entry holds the
// action itself, checked on read against the action union's schema.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { removeDurably, writeJsonAtomic } from "./atomic-file.js";
import { vmActionSchema, type VmAction } from "../definition/vm-action.js";
import { diskSchema, nicSchema } from "../definition/vm-definition.js";

/** What an operation learnt while it ran that its recovery needs beyond the action. */
/** Images an incoming migration made in the pools: removed again, and only these files, if it is rolled back. */
export const createdImagesSchema = z.array(z.object({ path: z.string(), dev: z.number(), ino: z.number() }).strict());
export type CreatedImage = z.infer<typeof createdImagesSchema>[number];

export const journalFactsSchema = z.strictObject({
  /** A device change: made on a running qemu (hot-plug) or on the definition only. */
  live: z.boolean().optional(),
  /** A disk removal: the disk as the definition held it (its file goes after it). */
  disk: diskSchema.optional(),
  /** A NIC change: the NIC with its MAC, and its place (the device id) in the definition. */
  nic: nicSchema.optional(),
  index: z.number().int().min(0).optional(),
  /** An outgoing migration: its job. */
  job: z.string().optional(),
  /** A migration (either side): its id, by which the destination's outcome record is asked for (absent in entries written before ids). */
  migration: z.string().optional(),
  /** An incoming migration: the images made for it, removed again if it is rolled back. */
  createdImages: createdImagesSchema.optional(),
});
export type JournalFacts = z.output<typeof journalFactsSchema>;

export const journalEntrySchema = z.object({
  id: z.string(),
  vm: z.string(),
  action: vmActionSchema,
  startedAt: z.string(),
  /** Steps completed so far, in order. */
  done: z.array(z.string()),
  facts: journalFactsSchema.default({}),
});
export type JournalEntry = z.output<typeof journalEntrySchema>;

export class OperationJournal {
  private entry: JournalEntry | undefined;

  constructor(private readonly file: string) {}

  async begin(vm: string, action: VmAction, facts: JournalFacts = {}): Promise<JournalEntry> {
    const entry: JournalEntry = { id: randomUUID(), vm, action, startedAt: new Date().toISOString(), done: [], facts };
    // Held only once on disk: an entry that could not be written (a full disk) records no steps either.
    await writeJsonAtomic(this.file, entry);
    this.entry = entry;
    return entry;
  }

  async stepDone(step: string): Promise<void> {
    if (!this.entry) return;
    this.entry.done.push(step);
    await writeJsonAtomic(this.file, this.entry);
  }

  async end(): Promise<void> {
    this.entry = undefined;
    await removeDurably(this.file);
  }

  get current(): JournalEntry | undefined {
    return this.entry;
  }

  /**
   * The entry an earlier daemon left behind, if its operation never ended; one in
   * the earlier format (an operation name with its params) is converted once here.
   */
  async readInterrupted(onUnreadable?: (err: Error, raw: string) => void): Promise<JournalEntry | undefined> {
    let raw: string;
    try {
      raw = await readFile(this.file, "utf8");
    } catch {
      return undefined;
    }
    try {
      return parseJournalEntry(JSON.parse(raw));
    } catch (err) {
      // Not silently "nothing was under way": whoever reads it says so.
      onUnreadable?.(err as Error, raw);
      return undefined;
    }
  }
}

/** A journal entry as written now, or as daemons before the action union wrote it; throws on anything else. */
export function parseJournalEntry(raw: unknown): JournalEntry {
  const current = journalEntrySchema.safeParse(raw);
  if (current.success) return current.data;
  const earlier = earlierEntrySchema.parse(raw);
  const { action, facts } = fromEarlierFormat(earlier.operation, earlier.params);
  return journalEntrySchema.parse({ id: earlier.id, vm: earlier.vm, action, startedAt: earlier.startedAt, done: earlier.done, facts });
}

/** The format before the action union: an operation name and untyped params. */
const earlierEntrySchema = z.object({
  id: z.string(),
  vm: z.string(),
  operation: z.string(),
  startedAt: z.string(),
  done: z.array(z.string()),
  params: z.record(z.string(), z.unknown()).default({}),
});

/** Each operation name an earlier daemon journaled, as the action it was, and what else it recorded. */
function fromEarlierFormat(operation: string, p: Record<string, unknown>): { action: unknown; facts: unknown } {
  const device = { live: p.live, index: p.index };
  switch (operation) {
    case "start":
    case "stop":
      return { action: { kind: operation }, facts: {} };
    case "shutdown":
      return { action: { kind: "shutdown", timeoutSec: p.timeoutSec }, facts: {} };
    case "cdrom":
      return { action: p.image === null || p.image === undefined ? { kind: "eject-cdrom" } : { kind: "change-cdrom", image: p.image }, facts: {} };
    case "disk-resize":
      return { action: { kind: "resize-disk", disk: p.disk, sizeGiB: p.sizeGiB }, facts: {} };
    case "disk-add":
      return { action: { kind: "add-disk", disk: p.disk }, facts: { live: p.live } };
    case "disk-remove":
      return { action: { kind: "remove-disk", disk: (p.disk as { name?: unknown } | undefined)?.name }, facts: { live: p.live, disk: p.disk } };
    case "nic-add":
      return { action: { kind: "add-nic", nic: p.nic }, facts: device };
    case "nic-remove":
      return { action: { kind: "remove-nic", nic: (p.nic as { mac?: unknown } | undefined)?.mac }, facts: { ...device, nic: p.nic } };
    case "migrate":
      return { action: { kind: "migrate", destination: p.destination, storage: p.storage }, facts: { job: p.job } };
    case "migrate-in":
      return { action: { kind: "migrate-in", storage: p.storage }, facts: { createdImages: p.createdImages } };
    default:
      throw new Error(`no operation "${operation}" was ever journaled`);
  }
}
