// The destination's outcome records on disk: <state-dir>/migrations/<id>.json,
// each written whole (temp file, fsync, rename, directory fsync), so a daemon
// killed at any instant leaves the old record or the new one. A record is
// written before the step it describes takes effect: `prepared` before qemu
// -incoming listens, `committed` before `cont`, `aborted` before anything is removed.
import { mkdir, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { removeDurably, writeFileAtomic } from "../store/atomic-file.js";
import {
  decodeRecord,
  encodeRecord,
  mayFollow,
  migrationIdSchema,
  recordsToPrune,
  type MigrationOutcome,
  type OutcomeRecord,
} from "./outcome-record.js";

export class OutcomeStore {
  private readonly dir: string;

  constructor(
    stateDir: string,
    private readonly log: Logger,
  ) {
    this.dir = path.join(stateDir, "migrations");
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.prune();
  }

  /** Records the outcome; refuses to turn a final outcome into another (a bug, never an input). */
  async record(id: string, vm: { name: string; uuid: string }, outcome: MigrationOutcome): Promise<OutcomeRecord> {
    const before = await this.read(id);
    if (!mayFollow(before?.outcome, outcome)) {
      throw new Error(`migration ${id}: outcome ${before!.outcome} cannot become ${outcome}`);
    }
    const rec: OutcomeRecord = { id, vm: vm.name, uuid: vm.uuid, outcome, at: new Date().toISOString() };
    await writeFileAtomic(this.file(id), encodeRecord(rec));
    return rec;
  }

  /** The record of this id; undefined if there is none (or it cannot be read, which is logged). */
  async read(id: string): Promise<OutcomeRecord | undefined> {
    if (!migrationIdSchema.safeParse(id).success) return undefined;
    let text: string;
    try {
      text = await readFile(this.file(id), "utf8");
    } catch {
      return undefined;
    }
    try {
      return decodeRecord(text);
    } catch (err) {
      this.log.error({ err, id }, "migration outcome record unreadable; answered as no record");
      return undefined;
    }
  }

  async list(): Promise<OutcomeRecord[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const out: OutcomeRecord[] = [];
    for (const n of names) {
      if (!n.endsWith(".json") || n.startsWith(".")) continue;
      const r = await this.read(n.slice(0, -".json".length));
      if (r) out.push(r);
    }
    return out;
  }

  /** The newest record for a VM of this name (and uuid, if given): for a source that does not send an id. */
  async latestFor(name: string, uuid?: string): Promise<OutcomeRecord | undefined> {
    const mine = (await this.list()).filter((r) => r.vm === name && (!uuid || r.uuid === uuid));
    return mine.sort((a, b) => Date.parse(b.at) - Date.parse(a.at))[0];
  }

  /** The source has acted on a final outcome: the record is kept a while longer, then pruned. */
  async acknowledge(id: string): Promise<OutcomeRecord | undefined> {
    const r = await this.read(id);
    if (!r || r.outcome === "prepared") return r;
    if (!r.acknowledgedAt) {
      const acked = { ...r, acknowledgedAt: new Date().toISOString() };
      await writeFileAtomic(this.file(id), encodeRecord(acked));
      await this.prune();
      return acked;
    }
    return r;
  }

  async prune(now = Date.now()): Promise<void> {
    for (const id of recordsToPrune(await this.list(), now)) {
      await removeDurably(this.file(id)).catch((err: unknown) => this.log.warn({ err, id }, "cannot prune a migration record"));
    }
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }
}
