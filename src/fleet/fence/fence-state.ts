// The files the daemon and its fence process share, in <run-dir>/fence/: the
// daemon writes state.json (atomically) with what the lease allows and which qemus
// to guard; the fence process writes status.json (what it can and cannot protect)
// and fenced.jsonl (what it killed). Both sides read each other's file only.
import path from "node:path";
import type { QemuProcessIdentity } from "../../qemu/qemu-identity.js";

/** Bumped when state.json changes meaning: a fence process of another protocol is replaced. */
export const FENCE_PROTOCOL = "2";

export interface FenceVm {
  name: string;
  uuid: string;
  /** The lease this host's owner key for the VM is bound to, as etcd confirmed it (absent: none held). */
  keyLease?: string;
  /** The VM's running qemu as recorded at its start (absent: not running, as far as the daemon knows). */
  qemu?: QemuProcessIdentity;
}

export interface FenceState {
  /** The lease the renewal below belongs to. A renewal of another lease never vouches for this one's keys. */
  leaseId?: string;
  /**
   * CLOCK_BOOTTIME (ns, /proc/uptime rounded down) at which the daemon SENT the
   * keepalive or grant that etcd then confirmed. etcd restarts the lease's TTL
   * only on receiving it, so the lease cannot expire before this + TTL, suspend included.
   */
  renewedSentAtBootNs?: string;
  ttlMs: number;
  /** The fence acts this long before the lease can expire. */
  marginMs: number;
  /**
   * "Fence now": a lease this host held is gone (expired, revoked, or replaced by
   * another). Every ha qemu whose key is not held under `leaseId` is killed at once.
   */
  lost?: { leaseId: string; reason: string; at: string };
  /** The daemon's run directory: only qemus started below it are this host's. */
  runDir: string;
  ha: FenceVm[];
  /** Petted while the lease is valid; `timeoutMs` is the device's own timeout. */
  watchdog?: { device: string; timeoutMs: number };
  writtenAt: string;
}

export type FenceMode = "idle" | "armed" | "refused" | "fencing";

/** What the fence process says of itself, in status.json. */
export interface FenceStatus {
  pid: number;
  protocol: string;
  mode: FenceMode;
  /** Why it fences, or why it refuses to arm. */
  cause?: string;
  leaseId?: string;
  /** Running ha VMs whose qemu it has confirmed by its recorded identity. */
  protects: string[];
  /** What it cannot see or use: a VM's qemu it cannot confirm, or the watchdog. */
  refusals: { what: string; why: string }[];
  watchdog?: { device: string; open: boolean; error?: string };
  at: string;
}

/** What the fence process records of each kill (fenced.jsonl, and fenced.json beside the VM's runtime record). */
export interface FencedRecord {
  at: string;
  vm: string;
  pid: number;
  startTicks?: number;
  leaseId?: string;
  cause: string;
}

export function fenceDir(runDir: string): string {
  return path.join(runDir, "fence");
}

export const STATE_FILE = "state.json";
export const STATUS_FILE = "status.json";
export const FENCED_FILE = "fenced.jsonl";
export const PID_FILE = "fence.pid";
/** Beside a VM's runtime record: the fence killed this qemu (read when the daemon records its exit). */
export const VM_FENCED_FILE = "fenced.json";

/** How early the fence acts: a fifth of the TTL, at least 1 s, never more than half of it. */
export function fenceMarginMs(ttlMs: number): number {
  return Math.min(Math.max(1000, Math.round(ttlMs / 5)), Math.round(ttlMs / 2));
}
