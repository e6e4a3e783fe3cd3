// VM definitions on disk: one directory per VM under <state-dir>/vms. A VM
// appears by renaming a fully prepared directory into place and disappears by
// renaming it aside before removal, so a crash never leaves half a VM visible.
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import path from "node:path";
import { VmExists } from "../errors.js";
import { vmDefinitionSchema, type VmDefinition, VM_NAME_PATTERN } from "../definition/vm-definition.js";
import { fsyncDir, writeJsonAtomic } from "./atomic-file.js";
import { vmPaths, type VmPaths } from "./vm-paths.js";

export type StoredVm = { name: string; definition: VmDefinition } | { name: string; error: string };

export class DefinitionStore {
  readonly vmsDir: string;

  constructor(
    readonly stateDir: string,
    readonly runDir: string,
  ) {
    this.vmsDir = path.join(stateDir, "vms");
  }

  paths(name: string): VmPaths {
    return vmPaths(this.stateDir, this.runDir, name);
  }

  async init(): Promise<void> {
    await mkdir(this.vmsDir, { recursive: true, mode: 0o755 });
    // Leftovers of a create or delete that a crash interrupted; never visible as VMs.
    // Failing to remove them (a read-only state disk) must not stop the daemon.
    for (const entry of await readdir(this.vmsDir)) {
      if (entry.startsWith(".")) await rm(path.join(this.vmsDir, entry), { recursive: true, force: true }).catch(() => {});
    }
  }

  /** Every VM directory, with its definition or the reason it could not be read. */
  async list(): Promise<StoredVm[]> {
    const names = (await readdir(this.vmsDir)).filter((n) => VM_NAME_PATTERN.test(n)).sort();
    return Promise.all(names.map((name) => this.read(name)));
  }

  async read(name: string): Promise<StoredVm> {
    try {
      const raw = JSON.parse(await readFile(this.paths(name).definition, "utf8"));
      return { name, definition: vmDefinitionSchema.parse(raw) };
    } catch (err) {
      return { name, error: `definition unreadable: ${(err as Error).message}` };
    }
  }

  /**
   * Prepares a new VM directory aside (the definition, then `populate` creates its
   * disks there), then renames it into place. On any failure nothing is left.
   */
  async create(def: VmDefinition, populate: (staging: VmPaths) => Promise<void>): Promise<void> {
    const staging = path.join(this.vmsDir, `.creating-${def.name}-${randomBytes(4).toString("hex")}`);
    const stagingPaths = vmPaths(this.stateDir, this.runDir, def.name);
    const rebased = rebase(stagingPaths, stagingPaths.dir, staging);
    try {
      await mkdir(rebased.disksDir, { recursive: true, mode: 0o755 });
      // The definition first: a full state disk is told as such (507), not as a disk image qemu-img could not make.
      await writeJsonAtomic(rebased.definition, def);
      await populate(rebased);
      await fsyncDir(staging);
      // rename() onto an existing non-empty directory fails, which is the name clash check.
      await rename(staging, stagingPaths.dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOTEMPTY" || err.code === "EEXIST") throw new VmExists(def.name);
        throw err;
      });
      await fsyncDir(this.vmsDir);
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
  }

  async update(def: VmDefinition): Promise<void> {
    await writeJsonAtomic(this.paths(def.name).definition, def);
  }

  /** Renames the VM's directory aside (the atomic step), then removes it and its run directory. */
  async remove(name: string): Promise<void> {
    const p = this.paths(name);
    const aside = path.join(this.vmsDir, `.deleting-${name}-${randomBytes(4).toString("hex")}`);
    await rename(p.dir, aside);
    await fsyncDir(this.vmsDir);
    await rm(aside, { recursive: true, force: true });
    await rm(p.runDir, { recursive: true, force: true });
  }
}

function rebase(p: VmPaths, from: string, to: string): VmPaths {
  const out = { ...p };
  for (const k of Object.keys(out) as (keyof VmPaths)[]) {
    if (out[k].startsWith(from)) out[k] = to + out[k].slice(from.length);
  }
  return out;
}
