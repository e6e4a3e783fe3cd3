// A VM's resource limits as one zod schema: what the definition stores, what
// PATCH /v1/vms/{name}/limits merges into it, and what a running VM reports as
// applied. Each field is applied by one mechanism: cpu, memory and pids by the
// VM's cgroup (vm-cgroup.ts), disk by qemu's throttle group (disk-throttle.ts),
// network by tc on its taps (tap-shaping.ts). An absent field is no limit.
import { z } from "zod";

/** cgroup v2's cpu.weight range; 100 is every process's default share. */
export const CPU_WEIGHT_MIN = 1;
export const CPU_WEIGHT_MAX = 10_000;
/** Percent of one host core: 100 is one full core, 400 four. */
export const CPU_MAX_PERCENT_MAX = 100 * 255;
/** qemu itself needs memory beside the guest's: a cap below this would kill it at start. */
export const MEMORY_OVERHEAD_MIB = 64;
/** qemu runs a dozen threads or more (vCPUs, iothreads, its I/O pool): fewer cannot start it. */
export const PIDS_MIN = 32;
export const PIDS_MAX = 4_194_304;
/** 10 Gbit/s, in kbit/s; and the disk ceilings: a bound, not a hint. */
const NET_KBPS_MAX = 100_000_000;
const DISK_BPS_MAX = 2 ** 40;
const DISK_IOPS_MAX = 10_000_000;

const bps = z.number().int().min(4096, "at least 4096 bytes/s").max(DISK_BPS_MAX);
const iops = z.number().int().min(1).max(DISK_IOPS_MAX);
const kbps = z.number().int().min(8, "at least 8 kbit/s").max(NET_KBPS_MAX);

export const cpuLimitsSchema = z
  .object({
    weight: z.number().int().min(CPU_WEIGHT_MIN).max(CPU_WEIGHT_MAX).optional()
      .describe("relative share of CPU time when the host is busy (1-10000, default 100)"),
    maxPercent: z.number().int().min(1).max(CPU_MAX_PERCENT_MAX).optional()
      .describe("hard cap in percent of one host core over all of the VM's threads (100: one core)"),
  })
  .strict();

export const memoryLimitsSchema = z
  .object({
    hardMiB: z.number().int().min(16).max(4 * 1024 * 1024).optional()
      .describe("hard cap on everything qemu uses (guest RAM and qemu's own); at least memoryMiB + 64"),
  })
  .strict();

export const diskLimitsSchema = z
  .object({
    iops: iops.optional().describe("read + write operations per second"),
    readIops: iops.optional(),
    writeIops: iops.optional(),
    bps: bps.optional().describe("read + write bytes per second"),
    readBps: bps.optional(),
    writeBps: bps.optional(),
    burstIops: iops.optional().describe("operations per second allowed for burstSeconds above the limits"),
    burstBps: bps.optional().describe("bytes per second allowed for burstSeconds above the limits"),
    burstSeconds: z.number().int().min(1).max(3600).optional().describe("how long a burst may last (default 1)"),
  })
  .strict()
  .superRefine((d, ctx) => {
    // qemu refuses a total limit beside a read or write one: named here rather than by qemu at start.
    for (const [total, parts] of [["iops", ["readIops", "writeIops"]], ["bps", ["readBps", "writeBps"]]] as const) {
      const clash = parts.find((p) => d[p] !== undefined);
      if (d[total] !== undefined && clash) ctx.addIssue({ code: "custom", path: [clash], message: `give ${total} or ${parts.join("/")}, not both` });
    }
    for (const [burst, base] of [["burstIops", ["iops", "readIops", "writeIops"]], ["burstBps", ["bps", "readBps", "writeBps"]]] as const) {
      const b = d[burst];
      if (b === undefined) continue;
      const limits = base.map((k) => d[k]).filter((v): v is number => v !== undefined);
      if (limits.length === 0) ctx.addIssue({ code: "custom", path: [burst], message: `a burst needs one of ${base.join(", ")}` });
      else if (b < Math.max(...limits)) ctx.addIssue({ code: "custom", path: [burst], message: `must be at least the limit it bursts above (${Math.max(...limits)})` });
    }
    if (d.burstSeconds !== undefined && d.burstIops === undefined && d.burstBps === undefined) {
      ctx.addIssue({ code: "custom", path: ["burstSeconds"], message: "give burstIops or burstBps with it" });
    }
  });

export const networkLimitsSchema = z
  .object({
    ingressKbps: kbps.optional().describe("from the guest, in kbit/s (policed: excess is dropped)"),
    egressKbps: kbps.optional().describe("to the guest, in kbit/s (shaped: excess waits in a queue)"),
    burstKiB: z.number().int().min(2).max(1024 * 1024).optional().describe("bucket size of both, in KiB (default from the rate)"),
  })
  .strict()
  .refine((n) => n.burstKiB === undefined || n.ingressKbps !== undefined || n.egressKbps !== undefined, {
    message: "give ingressKbps or egressKbps with it",
    path: ["burstKiB"],
  });

export const vmLimitsSchema = z
  .object({
    cpu: cpuLimitsSchema.optional(),
    memory: memoryLimitsSchema.optional(),
    disk: diskLimitsSchema.optional(),
    network: networkLimitsSchema.optional().describe("applies to each bridged NIC's tap"),
    pids: z.number().int().min(PIDS_MIN).max(PIDS_MAX).optional().describe("most threads qemu may have"),
  })
  .strict()
  .describe("resource limits, changeable while the VM runs (PATCH /v1/vms/{name}/limits)");

export type VmLimits = z.output<typeof vmLimitsSchema>;
export type CpuLimits = z.output<typeof cpuLimitsSchema>;
export type DiskLimits = z.output<typeof diskLimitsSchema>;
export type NetworkLimits = z.output<typeof networkLimitsSchema>;

/** The checks that need the rest of the definition; `path` is relative to the definition. */
export function limitsIssues(limits: VmLimits | undefined, memoryMiB: number): { path: (string | number)[]; message: string }[] {
  const hard = limits?.memory?.hardMiB;
  if (hard !== undefined && hard < memoryMiB + MEMORY_OVERHEAD_MIB) {
    return [{ path: ["limits", "memory", "hardMiB"], message: `must be at least memoryMiB + ${MEMORY_OVERHEAD_MIB} (${memoryMiB + MEMORY_OVERHEAD_MIB}): qemu needs memory of its own` }];
  }
  return [];
}

/**
 * A JSON merge patch of the limits: a field given replaces, `null` removes it
 * (a whole group or one field), an absent one stays. The result is checked
 * against vmLimitsSchema as a whole.
 */
const patchOf = <T extends z.ZodRawShape>(shape: T) =>
  z.object(Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, (v as z.ZodTypeAny).nullable().optional()])) as unknown as { [K in keyof T]: z.ZodOptional<z.ZodNullable<T[K]>> }).strict();

export const limitsPatchSchema = z
  .object({
    cpu: patchOf(cpuLimitsSchema.shape).nullable().optional(),
    memory: patchOf(memoryLimitsSchema.shape).nullable().optional(),
    disk: patchOf(diskLimitsSchema.shape).nullable().optional(),
    network: patchOf(networkLimitsSchema.shape).nullable().optional(),
    pids: z.number().int().min(PIDS_MIN).max(PIDS_MAX).nullable().optional(),
  })
  .strict()
  .describe("a merge patch of the limits: a value replaces, null removes, an absent field stays");
export type LimitsPatch = z.output<typeof limitsPatchSchema>;

export function mergeLimits(current: VmLimits | undefined, patch: LimitsPatch): unknown {
  const out: Record<string, unknown> = { ...(current ?? {}) };
  for (const [group, value] of Object.entries(patch)) {
    if (value === undefined) continue;
    if (value === null) delete out[group];
    else if (typeof value === "number") out[group] = value;
    else {
      const merged: Record<string, unknown> = { ...((out[group] as Record<string, unknown> | undefined) ?? {}) };
      for (const [k, v] of Object.entries(value)) {
        if (v === null) delete merged[k];
        else if (v !== undefined) merged[k] = v;
      }
      if (Object.keys(merged).length === 0) delete out[group];
      else out[group] = merged;
    }
  }
  return out;
}
