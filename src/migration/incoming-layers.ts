// The destination's side of copying a VM's snapshot layers (layer-files.ts):
// each file arrives over the peer API before the VM's directory exists, into a
// directory of its own per VM and migration under the state directory. A file
// is streamed into a temp file, its size and sha256 checked against what the
// source declared, fsynced and renamed to its name; only a plain layer name
// passes (isLayerName), so nothing lands outside that directory. The VM's
// directory then takes the files in (adopt). What is never taken in is removed:
// on a refused or aborted migration, after SILENCE_MS without a file, and at the
// daemon's start.
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { mkdir, open, readdir, rename, rm, statfs } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { FileNotFound, StateDiskFull, ValidationFailed } from "../errors.js";
import { fsyncDir } from "../store/atomic-file.js";
import { isLayerName } from "./layer-files.js";

/** Uploads not taken in by a prepared migration within this time are removed. */
const SILENCE_MS = 60_000;
/** Free space a layer must leave on the state file system: the daemon's own records must still fit. */
const KEEP_FREE_BYTES = 1024 ** 3;

export interface LayerUpload {
  vm: string;
  migration: string;
  /** Relative to the VM's directory: `disks/<file>` or `snapshots/<file>`. */
  file: string;
  size: number;
  sha256: string;
}

export class IncomingLayers {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly root: string) {}

  private dirOf(vm: string, migration: string): string {
    return path.join(this.root, `${vm}.${migration}`);
  }

  /** Takes one file from the stream; refused (and nothing kept) unless it is exactly what was declared. */
  async receive(up: LayerUpload, body: Readable): Promise<void> {
    if (!isLayerName(up.file)) throw new ValidationFailed(`file: ${up.file} is not a snapshot layer's name`, [{ field: "file", message: "not a layer name" }]);
    // Refused before a byte is written: a peer's declared size never fills the state disk.
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    const fs = await statfs(this.root);
    const freeBytes = fs.bavail * fs.bsize;
    if (up.size + KEEP_FREE_BYTES > freeBytes) {
      throw new StateDiskFull(`${up.file}: ${up.size} bytes declared, the state file system has ${freeBytes} free (1 GiB is kept free)`, { field: "size", freeBytes });
    }
    const dir = this.dirOf(up.vm, up.migration);
    this.touch(up.vm, up.migration);
    const target = path.join(dir, up.file);
    await mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(4).toString("hex")}.part`);
    // O_EXCL and no symlink followed: the name is made here, never reused.
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      const hash = createHash("sha256");
      let bytes = 0;
      let touched = Date.now();
      for await (const chunk of body as AsyncIterable<Buffer>) {
        bytes += chunk.length;
        // A long file keeps its directory alive while it flows.
        if (Date.now() - touched > 5_000) {
          touched = Date.now();
          this.touch(up.vm, up.migration);
        }
        if (bytes > up.size) throw new ValidationFailed(`${up.file}: more than the ${up.size} bytes declared`, [{ field: "size", message: "body longer than declared" }]);
        hash.update(chunk);
        await fh.write(chunk);
      }
      if (bytes !== up.size) throw new ValidationFailed(`${up.file}: ${bytes} bytes arrived, ${up.size} declared`, [{ field: "size", message: "body shorter than declared" }]);
      const got = hash.digest("hex");
      if (got !== up.sha256) throw new ValidationFailed(`${up.file}: sha256 ${got} is not the declared ${up.sha256}`, [{ field: "sha256", message: "does not match the body" }]);
      await fh.sync();
      await fh.close();
      await rename(tmp, target);
      await fsyncDir(path.dirname(target));
    } catch (err) {
      await fh.close().catch(() => {});
      await rm(tmp, { force: true });
      throw err;
    }
  }

  /**
   * Moves the migration's files into `vmDir` (the VM's directory being made,
   * same file system); every file of `want` must have arrived, no other one.
   */
  async adopt(vm: string, migration: string, want: readonly string[], vmDir: string): Promise<void> {
    const dir = this.dirOf(vm, migration);
    this.untouch(vm, migration);
    const have = new Set<string>();
    for (const sub of ["disks", "snapshots"]) {
      for (const f of await readdir(path.join(dir, sub)).catch(() => [] as string[])) if (!f.startsWith(".")) have.add(`${sub}/${f}`);
    }
    const missing = want.find((f) => !have.has(f));
    if (missing) throw new FileNotFound(`snapshots: layer ${missing} was not copied here`, { field: "snapshots" });
    const extra = [...have].find((f) => !want.includes(f));
    if (extra) throw new ValidationFailed(`snapshots: ${extra} arrived but the record does not name it`, [{ field: "snapshots", message: "unexpected layer" }]);
    for (const f of want) {
      await mkdir(path.dirname(path.join(vmDir, f)), { recursive: true, mode: 0o711 });
      await rename(path.join(dir, f), path.join(vmDir, f));
    }
    await rm(dir, { recursive: true, force: true });
  }

  /** Removes what arrived for `vm` (every migration of it): nothing takes it in now. */
  async discard(vm: string): Promise<boolean> {
    const names = (await readdir(this.root).catch(() => [] as string[])).filter((n) => n.startsWith(`${vm}.`) && n.length === vm.length + 37);
    for (const n of names) {
      this.untouch(vm, n.slice(vm.length + 1));
      await rm(path.join(this.root, n), { recursive: true, force: true });
    }
    return names.length > 0;
  }

  /** At the daemon's start: no upload outlives it (a migration cut short is prepared anew). */
  async sweep(): Promise<void> {
    await rm(this.root, { recursive: true, force: true });
  }

  private touch(vm: string, migration: string): void {
    this.untouch(vm, migration);
    const timer = setTimeout(() => {
      this.timers.delete(`${vm}.${migration}`);
      void rm(this.dirOf(vm, migration), { recursive: true, force: true });
    }, SILENCE_MS);
    timer.unref();
    this.timers.set(`${vm}.${migration}`, timer);
  }

  private untouch(vm: string, migration: string): void {
    const key = `${vm}.${migration}`;
    clearTimeout(this.timers.get(key));
    this.timers.delete(key);
  }
}
