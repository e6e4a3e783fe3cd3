// CLOCK_BOOTTIME for lease deadlines. etcd's lease keeps running while this host
// is suspended, so the clock that measures it here must count suspend too:
// CLOCK_MONOTONIC (process.hrtime) stops. Node has no clock_gettime(CLOCK_BOOTTIME);
// /proc/uptime is it (fs/proc/uptime.c prints ktime_get_boottime_ts64, adjusted
// for the reader's time namespace), truncated to hundredths of a second.
import { readFileSync } from "node:fs";

/** /proc/uptime's resolution: it prints seconds with two decimals, truncated. */
export const BOOTTIME_RESOLUTION_NS = 10_000_000n;

/** Parses /proc/uptime's first field ("12345.67") to nanoseconds, exactly (no float). */
export function parseUptimeNs(text: string): bigint {
  const m = /^(\d+)\.(\d{2})\s/.exec(text);
  if (!m) throw new Error(`unexpected /proc/uptime: ${JSON.stringify(text.slice(0, 40))}`);
  return BigInt(m[1]!) * 1_000_000_000n + BigInt(m[2]!) * BOOTTIME_RESOLUTION_NS;
}

/**
 * The boottime clock, rounded down: never later than the true time. A send time
 * taken with it can only make a deadline earlier, which is the safe side.
 */
export function boottimeNs(): bigint {
  return parseUptimeNs(readFileSync("/proc/uptime", "latin1"));
}

/**
 * The boottime clock, rounded up: never earlier than the true time. A "now"
 * compared against a deadline uses this, so the truncation cannot make a fence late.
 */
export function boottimeCeilNs(): bigint {
  return boottimeNs() + BOOTTIME_RESOLUTION_NS;
}
