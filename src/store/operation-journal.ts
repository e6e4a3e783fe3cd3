// The journal of a VM's operation in flight: the intent is written before the
// first step acts and the progress after each step, so a daemon restarted after
// a crash knows what was under way and can finish or undo it.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { z } from "zod";
import { removeDurably, writeJsonAtomic } from "./atomic-file.js";

export const journalEntrySchema = z.object({
  id: z.string(),
  vm: z.string(),
  operation: z.string(),
  startedAt: z.string(),
  /** Steps completed so far, in order. */
  done: z.array(z.string()),
  params: z.record(z.string(), z.unknown()).default({}),
});
export type JournalEntry = z.infer<typeof journalEntrySchema>;

export class OperationJournal {
  private entry: JournalEntry | undefined;

  constructor(private readonly file: string) {}

  async begin(vm: string, operation: string, params: Record<string, unknown> = {}): Promise<JournalEntry> {
    const entry = { id: randomUUID(), vm, operation, startedAt: new Date().toISOString(), done: [], params };
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

  /** The entry an earlier daemon left behind, if its operation never ended. */
  async readInterrupted(): Promise<JournalEntry | undefined> {
    try {
      return journalEntrySchema.parse(JSON.parse(await readFile(this.file, "utf8")));
    } catch {
      return undefined;
    }
  }
}
