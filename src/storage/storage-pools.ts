// Storage pools: the only directories whose files a VM may use (images, kernels,
// ISOs). A path is accepted only if, after resolving every symlink, it still lies
// inside a pool: `../`, absolute paths elsewhere and symlinks pointing out are 400s.
import { lstat, mkdir, realpath, stat, statfs } from "node:fs/promises";
import path from "node:path";
import { FileExists, FileNotFound, PathOutsidePool } from "../errors.js";

export const DEFAULT_POOL = "images";

export interface Pool {
  name: string;
  dir: string;
}

export interface PoolUsage extends Pool {
  /** What an unprivileged writer can still use; null if the directory cannot be read. */
  freeBytes: number | null;
  totalBytes: number | null;
}

export interface ResolvedFile {
  pool: string;
  /** Path relative to the pool's directory. */
  relative: string;
  /** Absolute path with symlinks resolved: what qemu is given. */
  absolute: string;
}

export class StoragePools {
  private readonly pools: Pool[];

  constructor(pools: Pool[]) {
    this.pools = pools.map((p) => ({ name: p.name, dir: path.resolve(p.dir) }));
  }

  list(): readonly Pool[] {
    return this.pools;
  }

  /** Every pool with the free and total space of the filesystem it lies on. */
  async usage(): Promise<PoolUsage[]> {
    return Promise.all(
      this.pools.map(async (p) => {
        const fs = await statfs(p.dir).catch(() => undefined);
        return { ...p, freeBytes: fs ? fs.bavail * fs.bsize : null, totalBytes: fs ? fs.blocks * fs.bsize : null };
      }),
    );
  }

  async init(): Promise<void> {
    for (const p of this.pools) await mkdir(p.dir, { recursive: true, mode: 0o755 });
  }

  /**
   * Resolves a file named in a definition. A relative path is relative to the
   * `images` pool. `field` names the request field for the error.
   */
  async resolveFile(input: string, field: string): Promise<ResolvedFile> {
    const defaultPool = this.pools.find((p) => p.name === DEFAULT_POOL) ?? this.pools[0];
    if (!defaultPool) throw new PathOutsidePool("no storage pools are configured", { field });
    const candidate = path.resolve(defaultPool.dir, input);
    const lexical = this.poolOf(candidate);
    if (!lexical) {
      throw new PathOutsidePool(`${field}: "${input}" is outside every storage pool`, { field, path: input });
    }
    let real: string;
    try {
      real = await realpath(candidate);
    } catch {
      throw new FileNotFound(`${field}: "${input}" does not exist`, { field, path: input });
    }
    const owner = await this.realPoolOf(real);
    if (!owner) {
      throw new PathOutsidePool(`${field}: "${input}" resolves outside every storage pool`, { field, path: input });
    }
    const st = await stat(real);
    if (!st.isFile()) throw new FileNotFound(`${field}: "${input}" is not a regular file`, { field, path: input });
    return { pool: owner.pool.name, relative: path.relative(owner.realDir, real), absolute: real };
  }

  /**
   * A file the daemon is to create (a backup's target): its directory must exist
   * and resolve inside a pool, and the file must not exist (409: never overwritten,
   * not even through a dangling symlink).
   */
  async resolveNewFile(input: string, field: string): Promise<ResolvedFile> {
    const defaultPool = this.pools.find((p) => p.name === DEFAULT_POOL) ?? this.pools[0];
    if (!defaultPool) throw new PathOutsidePool("no storage pools are configured", { field });
    const candidate = path.resolve(defaultPool.dir, input);
    if (!this.poolOf(candidate)) {
      throw new PathOutsidePool(`${field}: "${input}" is outside every storage pool`, { field, path: input });
    }
    if (await lstat(candidate).then(() => true, () => false)) {
      throw new FileExists(`${field}: "${input}" already exists`, { field, path: input });
    }
    let realDir: string;
    try {
      realDir = await realpath(path.dirname(candidate));
    } catch {
      throw new FileNotFound(`${field}: the directory of "${input}" does not exist`, { field, path: input });
    }
    const real = path.join(realDir, path.basename(candidate));
    const owner = await this.realPoolOf(real);
    if (!owner) {
      throw new PathOutsidePool(`${field}: "${input}" resolves outside every storage pool`, { field, path: input });
    }
    return { pool: owner.pool.name, relative: path.relative(owner.realDir, real), absolute: real };
  }

  /**
   * Where a file named by pool and relative path lives on this host (it need not
   * exist yet). A migration names files this way: path R in pool P on one host is
   * path R in pool P on the other.
   */
  locate(pool: string, relative: string, field: string): string {
    const p = this.pools.find((x) => x.name === pool);
    if (!p) throw new PathOutsidePool(`${field}: this host has no storage pool "${pool}"`, { field, pool });
    const abs = path.resolve(p.dir, relative);
    if (!isInside(p.dir, abs)) throw new PathOutsidePool(`${field}: "${relative}" leaves pool "${pool}"`, { field, pool });
    return abs;
  }

  /** The pool an already resolved path (no symlinks left in it) lies in, if any. */
  async poolOfRealPath(real: string): Promise<string | undefined> {
    return (await this.realPoolOf(real))?.pool.name;
  }

  private poolOf(abs: string): Pool | undefined {
    return this.pools.find((p) => isInside(p.dir, abs));
  }

  private async realPoolOf(real: string): Promise<{ pool: Pool; realDir: string } | undefined> {
    for (const pool of this.pools) {
      const realDir = await realpath(pool.dir).catch(() => pool.dir);
      if (isInside(realDir, real)) return { pool, realDir };
    }
    return undefined;
  }
}

function isInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
}
