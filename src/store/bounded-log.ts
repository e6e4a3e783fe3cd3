// A log file another process appends to (qemu: the serial console's logfile,
// its own stdout/stderr), kept to its newest bytes so that a guest writing
// without pause cannot fill the state disk. qemu opened the file O_APPEND and
// never reopens it, so the file cannot be renamed away: the newest bytes are
// copied to `<file>.1` and the file is truncated in place, after which qemu's
// next write lands at its start. `<file>.start` records how many bytes of the
// stream came before the live file, so readers' offsets survive rotations and
// daemon restarts.
import { open, readFile, rename, rm, stat } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { writeJsonAtomic } from "./atomic-file.js";
import {
  afterRotation,
  keepBytes,
  logEnd,
  needsRotation,
  nextCheckDelayMs,
  planRead,
  retainedStart,
  type LogLayout,
} from "./log-window.js";

const COPY_CHUNK = 64 * 1024;

export interface LogSlice {
  data: Buffer;
  /** Logical position of the first byte still kept. */
  start: number;
  /** Logical position of `data`'s first byte. */
  from: number;
  /** Bytes between the asked offset and `from` that were rotated away. */
  skipped: number;
  /** Where the next read continues. */
  next: number;
  /** Logical end of the log: every byte written so far. */
  end: number;
}

export class BoundedLog {
  readonly rotatedFile: string;
  readonly startFile: string;
  private readonly copyFile: string;
  private currentStart: number | undefined;
  /** Reads and rotations run one at a time: a read never sees a half-made rotation. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly file: string,
    readonly maxBytes: number,
    private readonly log: Logger,
  ) {
    this.rotatedFile = `${file}.1`;
    this.startFile = `${file}.start`;
    this.copyFile = `${file}.1.tmp`;
  }

  async layout(): Promise<LogLayout> {
    const [currentStart, rotatedSize, currentSize] = await Promise.all([this.loadStart(), sizeOf(this.rotatedFile), sizeOf(this.file)]);
    return { currentStart, rotatedSize, currentSize };
  }

  /** Up to `limit` bytes from logical `offset`, across `.1` and the live file. */
  read(offset: number, limit: number): Promise<LogSlice> {
    return this.exclusive(async () => {
      const l = await this.layout();
      const plan = planRead(l, offset, limit);
      const parts: Buffer[] = [];
      for (const r of plan.ranges) parts.push(await readRange(r.file === "rotated" ? this.rotatedFile : this.file, r.position, r.length));
      const data = Buffer.concat(parts);
      return { data, start: retainedStart(l), from: plan.from, skipped: plan.skipped, next: plan.from + data.length, end: logEnd(l) };
    });
  }

  /** Rotates if the live file is past its share of the cap; true if it did. */
  enforce(): Promise<boolean> {
    return this.exclusive(async () => {
      if (!needsRotation(await sizeOf(this.file), this.maxBytes)) return false;
      await this.rotate();
      return true;
    });
  }

  /**
   * Keeps the log bounded while its writer runs: looks at the size often when
   * it grows fast, rarely when it is quiet (a few stats per look). Ends with `signal`.
   */
  async watch(signal: AbortSignal): Promise<void> {
    let lastEnd: number | undefined;
    let lastAt = Date.now();
    let failing = false;
    while (!signal.aborted) {
      let size = 0;
      let rate = 0;
      try {
        await this.enforce();
        const l = await this.layout();
        size = l.currentSize;
        const now = Date.now();
        if (lastEnd !== undefined && now > lastAt) rate = ((logEnd(l) - lastEnd) * 1000) / (now - lastAt);
        lastEnd = logEnd(l);
        lastAt = now;
        if (failing) this.log.info({ file: this.file }, "log rotation works again");
        failing = false;
      } catch (err) {
        if (!failing) this.log.error({ err, file: this.file }, "cannot rotate log");
        failing = true;
      }
      await sleep(nextCheckDelayMs(size, rate, this.maxBytes), undefined, { signal, ref: false }).catch(() => {});
    }
  }

  private async rotate(): Promise<void> {
    const before = await this.layout();
    const src = await open(this.file, "r+");
    let consumed = 0;
    let kept = 0;
    try {
      consumed = Math.max(0, (await src.stat()).size - keepBytes(this.maxBytes));
      try {
        // A writer that outpaces the copy (only a hostile one could) is cut off at the cap.
        const copied = await copyToEnd(src, consumed, this.copyFile, this.maxBytes);
        // What qemu appends between the read that found the end and this truncate is
        // lost: a window of one system call, against a loss-free copy on every other byte.
        await src.truncate(0);
        consumed += copied;
        kept = copied;
      } catch (err) {
        // The state disk is full (or the copy failed otherwise): the bound matters more
        // than the history, so the live file is emptied and nothing is kept.
        this.log.error({ err, file: this.file }, "cannot keep rotated log bytes; dropping them");
        await rm(this.copyFile, { force: true });
        consumed = (await src.stat()).size;
        await src.truncate(0);
        kept = 0;
      }
    } finally {
      await src.close();
    }
    if (kept > 0) await rename(this.copyFile, this.rotatedFile);
    else await rm(this.rotatedFile, { force: true });
    const after = afterRotation(before, consumed, kept);
    this.currentStart = after.currentStart;
    // A daemon killed between the truncate and this write restarts with the old start:
    // positions handed out since then are reused, never bytes lost (README: Console log).
    await writeJsonAtomic(this.startFile, { currentStart: after.currentStart }).catch((err: Error) =>
      this.log.error({ err, file: this.startFile }, "cannot record where the log starts"),
    );
    this.log.debug({ file: this.file, consumed, kept, currentStart: after.currentStart }, "log rotated");
  }

  private async loadStart(): Promise<number> {
    if (this.currentStart !== undefined) return this.currentStart;
    let start = 0;
    try {
      const v = (JSON.parse(await readFile(this.startFile, "utf8")) as { currentStart?: unknown }).currentStart;
      if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) start = v;
      else this.log.warn({ file: this.startFile }, "log start record is not a position; counting from 0");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.log.warn({ err, file: this.startFile }, "log start record unreadable; counting from 0");
    }
    // A copy a killed daemon left half-made is not the rotated file.
    await rm(this.copyFile, { force: true });
    this.currentStart = start;
    return start;
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
}

/** Copies `src` from `position` until a read finds its end, or `most` bytes; returns the bytes copied. */
async function copyToEnd(src: FileHandle, position: number, target: string, most: number): Promise<number> {
  const dst = await open(target, "w", 0o600);
  try {
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    let copied = 0;
    while (copied < most) {
      const { bytesRead } = await src.read(buf, 0, Math.min(COPY_CHUNK, most - copied), position + copied);
      if (bytesRead === 0) return copied;
      // A short write is how a full disk first shows; the next one then fails with ENOSPC.
      for (let done = 0; done < bytesRead; ) done += (await dst.write(buf, done, bytesRead - done)).bytesWritten;
      copied += bytesRead;
    }
    return copied;
  } finally {
    await dst.close();
  }
}

async function readRange(file: string, position: number, length: number): Promise<Buffer> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return Buffer.alloc(0);
    throw err;
  }
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
