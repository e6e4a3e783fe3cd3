// A VM's cgroup: made when its qemu is spawned, before the guest runs a single
// instruction (qemu waits under -S until the start's `cont`); given the
// definition's cpu, memory and pids limits; read back for the view and the
// metrics; removed after qemu exits. Without systemd it lives under a parent the
// daemon owns, `vmhostd/<vm>-<8 hex>` beneath the daemon's own cgroup (v1) or
// beside it (v2, whose inner nodes may hold no processes); with systemd it is a
// scope (systemd-scope.ts). A daemon restart finds it again from
// /proc/<pid>/cgroup, so it outlives the daemon just as qemu does.
import { createHash } from "node:crypto";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { LimitsFailed } from "../errors.js";
import { cgroupDir, cgroupHost, processCgroups, type CgroupHost } from "./cgroup-host.js";
import { CGROUP_CONTROLLERS, cgroupReadFiles, cgroupWrites, limitsFromCgroup, type CgroupController } from "./cgroup-values.js";
import type { VmLimits } from "./limits-schema.js";
import { startVmScope, vmScopeName } from "./systemd-scope.js";

export const CGROUP_PARENT = "vmhostd";

/** The VM's cgroup's last path element: its name, and 8 hex of its run directory, so two daemons' VMs of one name differ. */
export function vmCgroupLeaf(name: string, runDir: string): string {
  return `${name}-${createHash("sha256").update(runDir).digest("hex").slice(0, 8)}`;
}

/** Where the cgroups of a daemon whose own cgroups are `own` are made. */
export function parentPaths(host: Pick<CgroupHost, "version">, own: Record<CgroupController, string>): Record<CgroupController, string> {
  const under = (p: string): string => {
    if (host.version === 1) return path.posix.join(p, CGROUP_PARENT);
    // v2: a cgroup with processes may not hand controllers to children, so beside the daemon's own.
    return path.posix.join(p === "/" ? "/" : path.posix.dirname(p), CGROUP_PARENT);
  };
  return { cpu: under(own.cpu), memory: under(own.memory), pids: under(own.pids) };
}

export interface VmCgroupRef {
  host: CgroupHost;
  /** Per controller, the directory of the VM's cgroup. */
  dirs: Record<CgroupController, string>;
}

async function daemonParentDirs(host: CgroupHost): Promise<Record<CgroupController, string>> {
  const own = await processCgroups(host, "self");
  if (!own) throw new LimitsFailed("the daemon's own cgroups cannot be read from /proc/self/cgroup");
  const parents = parentPaths(host, own);
  return { cpu: cgroupDir(host, "cpu", parents.cpu), memory: cgroupDir(host, "memory", parents.memory), pids: cgroupDir(host, "pids", parents.pids) };
}

/** The VM's cgroup as the daemon makes it (not systemd): a pure function of the daemon's cgroup and the VM. */
async function ownedDirs(host: CgroupHost, leaf: string): Promise<Record<CgroupController, string>> {
  const p = await daemonParentDirs(host);
  return { cpu: path.join(p.cpu, leaf), memory: path.join(p.memory, leaf), pids: path.join(p.pids, leaf) };
}

/** Makes the VM's cgroup and moves `pid` (all its threads) into it. */
export async function placeInCgroup(leaf: string, pid: number): Promise<VmCgroupRef | undefined> {
  const host = await cgroupHost();
  if (!host) return undefined;
  if (host.systemd) {
    await startVmScope(vmScopeName(leaf), pid);
    return await findVmCgroup(pid);
  }
  const dirs = await ownedDirs(host, leaf);
  try {
    if (host.version === 2) await enableControllers(path.dirname(dirs.cpu));
    for (const c of CGROUP_CONTROLLERS) {
      await mkdir(dirs[c], { recursive: true });
      // v1: cgroup.procs moves the whole thread group, as v2's does.
      await writeFile(path.join(dirs[c], "cgroup.procs"), String(pid));
      if (host.version === 2) break;
    }
  } catch (err) {
    throw new LimitsFailed(`cannot place qemu (pid ${pid}) in its cgroup: ${(err as Error).message}`);
  }
  return { host, dirs };
}

/** v2: the parent must hand cpu, memory and pids to its children; its own parent must have them for it. */
async function enableControllers(parent: string): Promise<void> {
  await writeFile(path.join(path.dirname(parent), "cgroup.subtree_control"), "+cpu +memory +pids").catch(() => {});
  await mkdir(parent, { recursive: true });
  await writeFile(path.join(parent, "cgroup.subtree_control"), "+cpu +memory +pids");
}

/** The cgroup a running qemu is in now (after a daemon restart: found again from /proc). */
export async function findVmCgroup(pid: number): Promise<VmCgroupRef | undefined> {
  const host = await cgroupHost();
  if (!host) return undefined;
  const paths = await processCgroups(host, pid);
  if (!paths) return undefined;
  return { host, dirs: { cpu: cgroupDir(host, "cpu", paths.cpu), memory: cgroupDir(host, "memory", paths.memory), pids: cgroupDir(host, "pids", paths.pids) } };
}

/** True when qemu sits in the VM's own cgroup (and not, say, still in the daemon's). */
export function isVmCgroup(ref: VmCgroupRef, leaf: string): boolean {
  const name = ref.host.systemd ? vmScopeName(leaf) : leaf;
  return CGROUP_CONTROLLERS.every((c) => path.basename(ref.dirs[c]) === name);
}

/** Writes the limits (every file, so a removed limit is lifted). */
export async function applyCgroupLimits(ref: VmCgroupRef, limits: VmLimits | undefined): Promise<void> {
  for (const w of cgroupWrites(limits, ref.host.version)) {
    try {
      await writeFile(path.join(ref.dirs[w.controller], w.file), w.value);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // v1 refuses a memory limit below what the cgroup already uses.
      const why = e.code === "EBUSY" ? "qemu already uses more than that" : e.message;
      throw new LimitsFailed(`cannot write ${w.value} to ${w.file}: ${why}`, { file: path.join(ref.dirs[w.controller], w.file) });
    }
  }
}

/** The cpu, memory and pids limits the cgroup holds now. */
export async function readCgroupLimits(ref: VmCgroupRef): Promise<Pick<VmLimits, "cpu" | "memory" | "pids">> {
  const files: Record<string, string> = {};
  for (const f of cgroupReadFiles(ref.host.version)) {
    const v = await readFile(path.join(ref.dirs[f.controller], f.file), "utf8").catch(() => undefined);
    if (v !== undefined) files[f.file] = v;
  }
  return limitsFromCgroup(files, ref.host.version);
}

/**
 * Removes the VM's cgroup once qemu is gone (a systemd scope goes by itself once
 * empty). True when none is left: removed now, or there was none.
 */
export async function removeVmCgroup(leaf: string): Promise<boolean> {
  const host = await cgroupHost();
  if (!host || host.systemd) return true;
  const dirs = await ownedDirs(host, leaf).catch(() => undefined);
  if (!dirs) return true;
  let gone = true;
  // rmdir, never rm -r: a cgroup is removed by rmdir only, and only once it is empty.
  for (const c of CGROUP_CONTROLLERS) {
    await rmdir(dirs[c]).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") gone = false;
    });
  }
  return gone;
}
