// Where this host keeps cgroups: v2 (one unified tree mounted with
// cgroup.controllers) or v1 (a tree per controller, as on hybrid hosts, where
// the unified mount carries no cpu or memory), read once from /proc/self/mountinfo
// and /proc/self/cgroup. Paths of a process's cgroups come from /proc/<pid>/cgroup.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { CGROUP_CONTROLLERS, type CgroupController, type CgroupVersion } from "./cgroup-values.js";

export interface CgroupHost {
  version: CgroupVersion;
  /** Per controller: where its hierarchy is mounted, and which path of it that mount shows. */
  mounts: Record<CgroupController, { mountPoint: string; root: string }>;
  /** systemd runs the host: VMs' cgroups are scopes it knows of (systemd-scope.ts). */
  systemd: boolean;
}

interface Mount {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

/** /proc/self/mountinfo's cgroup mounts: `id parent dev root mountpoint opts ... - fstype source superopts`. */
export function parseCgroupMounts(mountinfo: string): Mount[] {
  return mountinfo.split("\n").flatMap((line) => {
    const [pre, post] = line.split(" - ");
    if (!pre || !post) return [];
    const f = pre.split(" ");
    const [fsType, , superOpts] = post.split(" ");
    if (fsType !== "cgroup" && fsType !== "cgroup2") return [];
    return [{ root: unescape(f[3] ?? "/"), mountPoint: unescape(f[4] ?? ""), fsType, superOptions: (superOpts ?? "").split(",") }];
  });
}

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** v2 when a unified mount carries all three controllers; else v1 with a mount for each. Undefined: neither is usable. */
export function chooseCgroupLayout(mounts: Mount[], unifiedControllers: (mountPoint: string) => string[]): Omit<CgroupHost, "systemd"> | undefined {
  for (const m of mounts.filter((m) => m.fsType === "cgroup2")) {
    const have = unifiedControllers(m.mountPoint);
    if (CGROUP_CONTROLLERS.every((c) => have.includes(c))) {
      const one = { mountPoint: m.mountPoint, root: m.root };
      return { version: 2, mounts: { cpu: one, memory: one, pids: one } };
    }
  }
  const v1: Partial<CgroupHost["mounts"]> = {};
  for (const c of CGROUP_CONTROLLERS) {
    const m = mounts.find((m) => m.fsType === "cgroup" && m.superOptions.includes(c));
    if (m) v1[c] = { mountPoint: m.mountPoint, root: m.root };
  }
  return CGROUP_CONTROLLERS.every((c) => v1[c]) ? { version: 1, mounts: v1 as CgroupHost["mounts"] } : undefined;
}

/** /proc/<pid>/cgroup: `id:controllers:path`; v2's line is `0::path`. */
export function parseProcCgroup(text: string): { v2?: string; v1: Partial<Record<CgroupController, string>> } {
  const out: { v2?: string; v1: Partial<Record<CgroupController, string>> } = { v1: {} };
  for (const line of text.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === "0" && m[2] === "") out.v2 = m[3]!;
    for (const c of m[2]!.split(",")) if ((CGROUP_CONTROLLERS as string[]).includes(c)) out.v1[c as CgroupController] = m[3]!;
  }
  return out;
}

let probed: Promise<CgroupHost | undefined> | undefined;

/** The host's cgroup layout, probed once. */
export function cgroupHost(): Promise<CgroupHost | undefined> {
  probed ??= probe();
  return probed;
}

async function probe(): Promise<CgroupHost | undefined> {
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const mounts = parseCgroupMounts(mountinfo);
  const controllers = new Map<string, string[]>();
  for (const m of mounts.filter((m) => m.fsType === "cgroup2")) {
    controllers.set(m.mountPoint, (await readFile(path.join(m.mountPoint, "cgroup.controllers"), "utf8").catch(() => "")).trim().split(/\s+/));
  }
  const layout = chooseCgroupLayout(mounts, (mp) => controllers.get(mp) ?? []);
  if (!layout) return undefined;
  // systemd's own test for "booted with systemd" (sd_booted).
  const systemd = await readFile("/run/systemd/system", "utf8").then(() => true, (err: NodeJS.ErrnoException) => err.code === "EISDIR");
  return { ...layout, systemd };
}

/** A cgroup path (as /proc/<pid>/cgroup shows it) as a directory for `controller`. */
export function cgroupDir(host: CgroupHost, controller: CgroupController, cgPath: string): string {
  const { mountPoint, root } = host.mounts[controller];
  const rel = root !== "/" && cgPath.startsWith(root) ? cgPath.slice(root.length) : cgPath;
  return path.join(mountPoint, rel);
}

/** Each controller's cgroup path of process `pid`. */
export async function processCgroups(host: CgroupHost, pid: number | "self"): Promise<Record<CgroupController, string> | undefined> {
  const text = await readFile(`/proc/${pid}/cgroup`, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  const parsed = parseProcCgroup(text);
  if (host.version === 2) {
    if (parsed.v2 === undefined) return undefined;
    return { cpu: parsed.v2, memory: parsed.v2, pids: parsed.v2 };
  }
  const { cpu, memory, pids } = parsed.v1;
  return cpu !== undefined && memory !== undefined && pids !== undefined ? { cpu, memory, pids } : undefined;
}
