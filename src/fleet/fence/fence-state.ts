// The one file the daemon and its fence process share: when the host lease was
// last renewed (as etcd confirmed it), and which VMs are `ha` here. Written
// atomically by the daemon; read by the fence process every poll.
import path from "node:path";

export interface FenceState {
  leaseId: string;
  /**
   * CLOCK_MONOTONIC (process.hrtime.bigint(), shared by all processes on the host)
   * at which the daemon SENT the keepalive or grant that etcd then confirmed. etcd
   * restarts the lease's TTL only on receiving it, so the lease cannot expire
   * before this + TTL.
   */
  renewedSentAtNs: string;
  ttlMs: number;
  /** The fence acts this long before the lease can expire. */
  marginMs: number;
  /** The daemon's run directory: only qemus started below it are this host's. */
  runDir: string;
  ha: { name: string; uuid: string }[];
  writtenAt: string;
}

export function fenceDir(runDir: string): string {
  return path.join(runDir, "fence");
}

export const STATE_FILE = "state.json";
export const FENCED_FILE = "fenced.jsonl";
export const PID_FILE = "fence.pid";

/** The monotonic time after which every `ha` qemu of this host must be dead. */
export function fenceDeadlineNs(s: FenceState): bigint {
  return BigInt(s.renewedSentAtNs) + BigInt(s.ttlMs - s.marginMs) * 1_000_000n;
}

/** How early the fence acts: a fifth of the TTL, at least 1 s, never more than half of it. */
export function fenceMarginMs(ttlMs: number): number {
  return Math.min(Math.max(1000, Math.round(ttlMs / 5)), Math.round(ttlMs / 2));
}
