// What the daemon learns by running programs at start — qemu's version, whether
// KVM runs guests (`--accel auto`), whether qemu can use io_uring — kept in the
// state directory so that a restart runs none of them: each is a child process
// of tens of milliseconds (the accelerator probe boots two tiny guests) on the
// path to the API answering. An entry holds only while the program is the same
// file (path, inode, size, mtime: an upgrade replaces it) under the same kernel
// (`uname -r`: KVM and io_uring are the kernel's). A hit is probed again in the
// background once the daemon is up, and the entry rewritten when the answer has
// changed; the running daemon keeps the answer it started with.
import { readFile, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Logger } from "pino";
import { writeJsonAtomic } from "../store/atomic-file.js";
import { CHILD_ENV } from "./child-process.js";

/** What identifies the program a probe ran and the kernel it ran under. */
export interface ProbeKey {
  path: string;
  ino: number;
  size: number;
  mtimeMs: number;
  kernel: string;
}

interface Entry {
  key: ProbeKey;
  value: unknown;
  at: string;
}

/** The file a binary named on the command line is: a bare name is looked up on the PATH children get. */
export async function binaryKey(binary: string, kernel = os.release()): Promise<ProbeKey> {
  const candidates = binary.includes("/") ? [path.resolve(binary)] : CHILD_ENV.PATH!.split(":").map((d) => path.join(d, binary));
  for (const file of candidates) {
    const st = await stat(file).catch(() => undefined);
    if (st?.isFile()) return { path: file, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, kernel };
  }
  throw new Error(`${binary}: not found`);
}

export function sameKey(a: ProbeKey, b: ProbeKey): boolean {
  return a.path === b.path && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.kernel === b.kernel;
}

export class ProbeCache {
  private entries: Record<string, Entry> | undefined;
  /** The probes answered from the cache, to be run again by refresh(). */
  private readonly hits: Array<() => Promise<void>> = [];
  private writing = Promise.resolve();

  constructor(
    readonly file: string,
    private readonly log: Logger,
    private readonly kernel = os.release(),
  ) {}

  /**
   * The cached answer of probe `name` for `binary`, or the probe's answer (then
   * cached). A binary that cannot be found is probed every time: the probe says why.
   */
  async get<T>(name: string, binary: string, probe: () => Promise<T>): Promise<T> {
    const key = await binaryKey(binary, this.kernel).catch(() => undefined);
    if (!key) return probe();
    const entries = await this.load();
    const cached = entries[name];
    if (cached && sameKey(cached.key, key)) {
      this.hits.push(async () => {
        const fresh = await probe();
        if (JSON.stringify(fresh) === JSON.stringify(cached.value)) return;
        this.log.info({ probe: name, cached: cached.value, now: fresh }, "a cached probe answers differently now: the next start uses the new answer");
        await this.store(name, key, fresh);
      });
      return cached.value as T;
    }
    const value = await probe();
    await this.store(name, key, value);
    return value;
  }

  /** Runs again every probe answered from the cache, one after the other; the answers go to the file only. */
  async refresh(): Promise<void> {
    for (const again of this.hits.splice(0)) {
      await again().catch((err: unknown) => this.log.warn({ err }, "refreshing a cached probe failed"));
    }
    await this.writing;
  }

  private async load(): Promise<Record<string, Entry>> {
    if (this.entries) return this.entries;
    const text = await readFile(this.file, "utf8").catch(() => "{}");
    try {
      const parsed = JSON.parse(text) as unknown;
      this.entries = parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Record<string, Entry>) : {};
    } catch {
      this.entries = {}; // a damaged cache is an empty one: every probe runs again
    }
    return this.entries;
  }

  private store(name: string, key: ProbeKey, value: unknown): Promise<void> {
    const entries = this.entries ?? {};
    entries[name] = { key, value, at: new Date().toISOString() };
    this.entries = entries;
    // One write at a time; a cache that cannot be written costs a probe at the next start, nothing more.
    this.writing = this.writing
      .then(() => writeJsonAtomic(this.file, entries))
      .catch((err: unknown) => this.log.warn({ err, file: this.file }, "cannot write the probe cache"));
    return this.writing;
  }
}
