// Hands out the per-VM uids of the qemu user's /etc/subuid range so that a uid
// is never given to a second VM while a file still belongs to the first: a
// deleted VM's in-place pool image or backup target stays owned by its uid, and
// a new VM with that uid could open it. Allocation only moves forward through
// the range, past a high-water mark kept in the state directory and written
// (atomically, durably) before the uid is used. Only once the whole range has
// been handed out does a uid come round again, and then only one that no VM
// holds and that owns no file under the scanned directories (the pools, the
// state and run directories).
import type { Dirent } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomic } from "../store/atomic-file.js";

export interface UidRange {
  start: number;
  count: number;
}

/** The uids of `range` that own a file or directory under `dirs` (symlinks not followed). */
export async function uidsOwningFiles(dirs: readonly string[], range: UidRange): Promise<Set<number>> {
  const found = new Set<number>();
  const inRange = (uid: number) => uid >= range.start && uid < range.start + range.count;
  const walk = async (dir: string): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // gone meanwhile, or not a directory
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      const st = await lstat(p).catch(() => undefined);
      if (st && inRange(st.uid)) found.add(st.uid);
      if (e.isDirectory()) await walk(p);
    }
  };
  for (const dir of dirs) {
    const st = await lstat(dir).catch(() => undefined);
    if (st && inRange(st.uid)) found.add(st.uid);
    await walk(dir);
  }
  return found;
}

export class UidRangeExhausted extends Error {
  override readonly name = "UidRangeExhausted";
}

export class UidAllocator {
  /** Serialises allocations: two VMs starting at once must not read the same mark. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly range: UidRange,
    /** The file holding the next never-used uid. */
    private readonly markFile: string,
    /** Which uids of the range still own files; asked only on a first start and after the range wrapped. */
    private readonly owned: () => Promise<Set<number>>,
  ) {}

  private get end(): number {
    return this.range.start + this.range.count;
  }

  /**
   * At the daemon's start: writes the mark if there is none yet, so the files
   * are looked through before any VM (or a file of one arriving by migration)
   * is there to move it on.
   */
  init(held: ReadonlySet<number>): Promise<void> {
    const done = this.queue.then(async () => {
      const stored = await this.storedMark();
      if (stored === undefined) await writeFileAtomic(this.markFile, `${await this.readMark(held)}\n`, 0o644);
    });
    this.queue = done.catch(() => {});
    return done;
  }

  /** A uid for a new VM; `held` are the uids VMs of this host hold now. */
  allocate(held: ReadonlySet<number>): Promise<number> {
    const next = this.queue.then(() => this.allocateNow(held));
    this.queue = next.catch(() => {});
    return next;
  }

  private async allocateNow(held: ReadonlySet<number>): Promise<number> {
    const mark = await this.readMark(held);
    if (mark < this.end) {
      await writeFileAtomic(this.markFile, `${mark + 1}\n`, 0o644);
      return mark;
    }
    const owned = await this.owned();
    for (let uid = this.range.start; uid < this.end; uid++) {
      if (!held.has(uid) && !owned.has(uid)) return uid;
    }
    throw new UidRangeExhausted(`every uid of the range ${this.range.start}-${this.end - 1} is held by a VM or still owns a file`);
  }

  /**
   * The mark as stored. A state directory without one (a first start, or one
   * from before the mark existed) starts above every uid already in use or owning
   * a file, so uids of VMs deleted earlier are not handed out again either.
   */
  private async readMark(held: ReadonlySet<number>): Promise<number> {
    const stored = await this.storedMark();
    if (stored !== undefined) return stored;
    let mark = this.range.start;
    for (const uid of [...held, ...(await this.owned())]) mark = Math.max(mark, uid + 1);
    return mark;
  }

  /** The mark on disk, or undefined if there is none (or it is not a uid of the range). */
  private async storedMark(): Promise<number | undefined> {
    const text = await readFile(this.markFile, "utf8").catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    const stored = Number(text?.trim());
    return text !== undefined && Number.isInteger(stored) && stored >= this.range.start ? Math.min(stored, this.end) : undefined;
  }
}
