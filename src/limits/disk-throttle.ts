// A VM's disk limits: one qemu throttle group per VM (`-object throttle-group`),
// and over each disk's chain a `throttle` filter node in that group, so all of a
// VM's disks share one budget and adding a disk adds no I/O. The filter is the
// node the device is attached to, above the disk's top format node: a snapshot's
// overlay goes under it (blockdev-snapshot replaces the top under its parents),
// and a merge moves the filter back onto the base, so whatever the chain is, the
// guest's I/O passes the group. A backup reads the top format node, not through
// the filter, and has a speed of its own. Changed live with qom-set on the
// group's `limits`.
import type { DiskLimits } from "./limits-schema.js";

export const THROTTLE_GROUP_ID = "throttle0";
export const THROTTLE_GROUP_PATH = `/objects/${THROTTLE_GROUP_ID}`;

/** A disk's throttle node's name (qemu allows 31 characters; disk names are at most 27). */
export const throttleNodeName = (disk: string): string => `t-${disk}`;

type Bucket = "bps-total" | "bps-read" | "bps-write" | "iops-total" | "iops-read" | "iops-write";
const BUCKETS: readonly Bucket[] = ["bps-total", "bps-read", "bps-write", "iops-total", "iops-read", "iops-write"];

/** qemu's ThrottleLimits (qapi/block-core.json) for the buckets used here: 0 is no limit. */
export type ThrottleLimits = Partial<Record<Bucket | `${Bucket}-max` | `${Bucket}-max-length`, number>>;

const FIELD_OF: Record<Bucket, keyof DiskLimits> = {
  "bps-total": "bps",
  "bps-read": "readBps",
  "bps-write": "writeBps",
  "iops-total": "iops",
  "iops-read": "readIops",
  "iops-write": "writeIops",
};

/**
 * Every bucket's three values, so that a qom-set leaves nothing of the previous
 * limits standing (qemu keeps a member the value does not name). A burst applies
 * to each of its kind's limits that is set; qemu refuses a burst length above 1
 * without a burst.
 */
export function throttleLimits(d: DiskLimits | undefined): Required<ThrottleLimits> {
  const out = {} as Required<ThrottleLimits>;
  for (const b of BUCKETS) {
    const avg = d?.[FIELD_OF[b]] ?? 0;
    const burst = avg > 0 ? (b.startsWith("bps") ? d?.burstBps : d?.burstIops) : undefined;
    out[b] = avg;
    out[`${b}-max`] = burst ?? 0;
    out[`${b}-max-length`] = burst !== undefined ? (d?.burstSeconds ?? 1) : 1;
  }
  return out;
}

/** The members that differ from "no limit": what a start's command line gives the group. */
export function throttleLimitsSet(d: DiskLimits | undefined): ThrottleLimits {
  const all = throttleLimits(d);
  return Object.fromEntries(Object.entries(all).filter(([k, v]) => (k.endsWith("-max-length") ? v !== 1 : v !== 0))) as ThrottleLimits;
}

/** What a group's `limits` (as qom-get returns it) says, in the definition's terms. */
export function diskLimitsFromThrottle(t: ThrottleLimits): DiskLimits | undefined {
  const out: Record<string, number> = {};
  let burstBps = 0;
  let burstIops = 0;
  let seconds: number | undefined;
  for (const b of BUCKETS) {
    const avg = t[b] ?? 0;
    if (avg > 0) out[FIELD_OF[b]] = avg;
    const max = t[`${b}-max`] ?? 0;
    if (avg > 0 && max > 0) {
      if (b.startsWith("bps")) burstBps = Math.max(burstBps, max);
      else burstIops = Math.max(burstIops, max);
      seconds = t[`${b}-max-length`] ?? 1;
    }
  }
  if (burstBps > 0) out.burstBps = burstBps;
  if (burstIops > 0) out.burstIops = burstIops;
  if (seconds !== undefined && seconds !== 1) out.burstSeconds = seconds;
  return Object.keys(out).length > 0 ? (out as DiskLimits) : undefined;
}

/** The qom-set that gives the running group these limits. */
export function throttleSetCommand(d: DiskLimits | undefined): { command: "qom-set"; args: { path: string; property: string; value: Required<ThrottleLimits> } } {
  return { command: "qom-set", args: { path: THROTTLE_GROUP_PATH, property: "limits", value: throttleLimits(d) } };
}
