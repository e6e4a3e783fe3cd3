// The files a VM's cgroup is given for its limits, and the limits read back from
// them: pure, for cgroup v2 (one unified tree) and v1 (a tree per controller).
// An absent limit is written as the kernel's own "no limit", so removing a field
// really lifts it rather than leaving the last value standing.
import type { VmLimits } from "./limits-schema.js";

export type CgroupVersion = 1 | 2;
/** The controllers the limits use; on v1 each is its own hierarchy. */
export type CgroupController = "cpu" | "memory" | "pids";
export const CGROUP_CONTROLLERS: readonly CgroupController[] = ["cpu", "memory", "pids"];

export interface CgroupWrite {
  controller: CgroupController;
  file: string;
  value: string;
}

/** The CFS period both versions use: 100 ms, the kernel's default. */
export const CPU_PERIOD_US = 100_000;
/** v1's cpu.shares of a process with the default weight (100). */
const V1_DEFAULT_SHARES = 1024;

/** cgroup v2's weight (1..10000, default 100) as v1's shares (2..262144, default 1024). */
export function weightToShares(weight: number): number {
  return Math.max(2, Math.round((weight * V1_DEFAULT_SHARES) / 100));
}

export function sharesToWeight(shares: number): number {
  return Math.max(1, Math.round((shares * 100) / V1_DEFAULT_SHARES));
}

/** The writes that make the cgroup hold exactly `limits` (cpu, memory, pids), in this order. */
export function cgroupWrites(limits: VmLimits | undefined, version: CgroupVersion): CgroupWrite[] {
  const weight = limits?.cpu?.weight;
  const quota = limits?.cpu?.maxPercent !== undefined ? (limits.cpu.maxPercent * CPU_PERIOD_US) / 100 : undefined;
  const memBytes = limits?.memory?.hardMiB !== undefined ? String(limits.memory.hardMiB * 1024 * 1024) : undefined;
  const pids = limits?.pids !== undefined ? String(limits.pids) : "max";
  if (version === 2) {
    return [
      { controller: "cpu", file: "cpu.weight", value: String(weight ?? 100) },
      { controller: "cpu", file: "cpu.max", value: `${quota ?? "max"} ${CPU_PERIOD_US}` },
      { controller: "memory", file: "memory.max", value: memBytes ?? "max" },
      { controller: "pids", file: "pids.max", value: pids },
    ];
  }
  return [
    { controller: "cpu", file: "cpu.shares", value: String(weight !== undefined ? weightToShares(weight) : V1_DEFAULT_SHARES) },
    // The period first: a quota is checked against the period already set.
    { controller: "cpu", file: "cpu.cfs_period_us", value: String(CPU_PERIOD_US) },
    { controller: "cpu", file: "cpu.cfs_quota_us", value: String(quota ?? -1) },
    { controller: "memory", file: "memory.limit_in_bytes", value: memBytes ?? "-1" },
    { controller: "pids", file: "pids.max", value: pids },
  ];
}

/** The files read back to learn what the cgroup holds. */
export function cgroupReadFiles(version: CgroupVersion): { controller: CgroupController; file: string }[] {
  return version === 2
    ? [
        { controller: "cpu", file: "cpu.weight" },
        { controller: "cpu", file: "cpu.max" },
        { controller: "memory", file: "memory.max" },
        { controller: "pids", file: "pids.max" },
      ]
    : [
        { controller: "cpu", file: "cpu.shares" },
        { controller: "cpu", file: "cpu.cfs_period_us" },
        { controller: "cpu", file: "cpu.cfs_quota_us" },
        { controller: "memory", file: "memory.limit_in_bytes" },
        { controller: "pids", file: "pids.max" },
      ];
}

/** v1 shows "no memory limit" as the largest page-aligned 64-bit value, not -1. */
const V1_NO_MEMORY_LIMIT = 2n ** 62n;

/**
 * What the cgroup's files say, as limits: only what differs from "no limit" (a
 * weight of 100 is every process's default and shows as absent).
 */
export function limitsFromCgroup(files: Record<string, string>, version: CgroupVersion): Pick<VmLimits, "cpu" | "memory" | "pids"> {
  const get = (f: string): string | undefined => files[f]?.trim();
  let weight: number | undefined;
  let maxPercent: number | undefined;
  let hardBytes: bigint | undefined;
  if (version === 2) {
    const w = Number(get("cpu.weight"));
    weight = Number.isFinite(w) && w !== 100 ? w : undefined;
    const [q, p] = (get("cpu.max") ?? "max").split(" ");
    if (q !== "max" && q !== undefined && p) maxPercent = Math.round((Number(q) * 100) / Number(p));
    const m = get("memory.max");
    if (m !== undefined && m !== "max") hardBytes = BigInt(m);
  } else {
    const shares = Number(get("cpu.shares"));
    weight = Number.isFinite(shares) && shares !== V1_DEFAULT_SHARES ? sharesToWeight(shares) : undefined;
    const q = Number(get("cpu.cfs_quota_us"));
    const p = Number(get("cpu.cfs_period_us"));
    if (q > 0 && p > 0) maxPercent = Math.round((q * 100) / p);
    const m = get("memory.limit_in_bytes");
    if (m !== undefined && /^\d+$/.test(m) && BigInt(m) < V1_NO_MEMORY_LIMIT) hardBytes = BigInt(m);
  }
  const pidsRaw = get("pids.max");
  const pids = pidsRaw !== undefined && pidsRaw !== "max" ? Number(pidsRaw) : undefined;
  const cpu = { ...(weight !== undefined ? { weight } : {}), ...(maxPercent !== undefined ? { maxPercent } : {}) };
  return {
    ...(Object.keys(cpu).length > 0 ? { cpu } : {}),
    ...(hardBytes !== undefined ? { memory: { hardMiB: Number(hardBytes / 1048576n) } } : {}),
    ...(pids !== undefined ? { pids } : {}),
  };
}
