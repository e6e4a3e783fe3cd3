// What the fence process does at one poll, as a pure function of the state the
// daemon wrote, the boottime clock and the ha qemus it can see: kill whom, pet the
// watchdog or not, and what to call itself (idle, armed, refused, fencing).
import type { FenceMode, FenceState, FenceVm } from "./fence-state.js";

/** An ha qemu visible now: by its recorded identity, or by the uuid and pidfile on its command line. */
export interface VisibleQemu {
  vm: string;
  pid: number;
  startTicks?: number;
}

export interface FenceDecision {
  mode: FenceMode;
  cause?: string;
  kill: VisibleQemu[];
  /** Pet the watchdog this poll. */
  pet: boolean;
  /** How far past the deadline (fencing by deadline only). */
  lateMs?: number;
}

export interface LeaseTrust {
  trusted: boolean;
  cause?: string;
  lateMs?: number;
  /** The earliest boottime at which etcd could let the lease go (absent: no renewal). */
  expiryNs?: bigint;
}

export type LeaseLoss = FenceState["lost"];

/**
 * The daemon's side of the same machine: the loss to write with a renewal of
 * `renewalLease`. A renewal of another lease than the one last written means the
 * old one went (and its keys with it), even if nobody said so. A loss ends once
 * every ha VM still running holds its key under the renewal's lease.
 */
export function nextLoss(
  lost: LeaseLoss,
  writtenLease: string | undefined,
  renewalLease: string,
  ha: Pick<FenceVm, "keyLease" | "qemu">[],
  at: string,
): { lost: LeaseLoss; change?: "replaced" | "ended" } {
  let change: "replaced" | "ended" | undefined;
  if (writtenLease && renewalLease !== writtenLease && lost?.leaseId !== writtenLease) {
    lost = { leaseId: writtenLease, reason: "replaced by a new lease", at };
    change = "replaced";
  }
  if (lost && lost.leaseId !== renewalLease && ha.every((v) => !v.qemu || v.keyLease === renewalLease)) {
    return { lost: undefined, change: "ended" };
  }
  return { lost, ...(change ? { change } : {}) };
}

/** The boottime after which every ha qemu of this host must be dead: last confirmed send + TTL − margin. */
export function fenceDeadlineNs(s: Pick<FenceState, "renewedSentAtBootNs" | "ttlMs" | "marginMs">): bigint | undefined {
  if (s.renewedSentAtBootNs === undefined) return undefined;
  return BigInt(s.renewedSentAtBootNs) + BigInt(s.ttlMs - s.marginMs) * 1_000_000n;
}

/** Whether the state's lease still vouches for this host's ha keys at `nowNs` (boottime, rounded up). */
export function leaseTrust(s: FenceState, nowNs: bigint): LeaseTrust {
  const deadline = fenceDeadlineNs(s);
  if (!s.leaseId || deadline === undefined) return { trusted: false, cause: "no confirmed lease renewal" };
  const expiryNs = BigInt(s.renewedSentAtBootNs!) + BigInt(s.ttlMs) * 1_000_000n;
  if (s.lost?.leaseId === s.leaseId) return { trusted: false, cause: `lease ${s.leaseId} lost (${s.lost.reason})`, expiryNs };
  if (nowNs >= deadline) {
    const lateMs = Number((nowNs - deadline) / 1_000_000n);
    return { trusted: false, cause: `lease ${s.leaseId} not renewed in time`, lateMs, expiryNs };
  }
  return { trusted: true, expiryNs };
}

/**
 * One poll's decision.
 * - The lease cannot be trusted (no renewal, lost, past its deadline): kill every visible ha qemu.
 * - It can, but an earlier lease was lost: kill each ha qemu whose key is not held under the
 *   current lease. A new lease never vouches for keys that went with the old one; the fence
 *   disarms once every ha qemu left runs under a key of the current lease.
 * - Otherwise armed, unless something it must see is hidden from it (refused).
 * The watchdog is petted only while no ha qemu lives past what the lease allows: while the
 * lease is valid for at least the watchdog's timeout more (so a fence that freezes now still
 * has the host reset before etcd can let the keys go), or once no ha qemu is left to protect.
 */
export function decideFence(
  s: FenceState | undefined,
  nowNs: bigint,
  visible: VisibleQemu[],
  refusals: { what: string; why: string }[],
  pollMs: number,
): FenceDecision {
  if (!s || s.ha.length === 0) return { mode: "idle", kill: [], pet: true };
  const trust = leaseTrust(s, nowNs);
  const wdMs = BigInt((s.watchdog?.timeoutMs ?? 0) + pollMs) * 1_000_000n;
  const petByLease = trust.trusted && trust.expiryNs !== undefined && nowNs + wdMs < trust.expiryNs;
  if (!trust.trusted) {
    return { mode: "fencing", cause: trust.cause!, kill: visible, pet: visible.length === 0, ...(trust.lateMs !== undefined ? { lateMs: trust.lateMs } : {}) };
  }
  if (s.lost) {
    const keyed = new Set(s.ha.filter((v) => v.keyLease === s.leaseId).map((v) => v.name));
    const kill = visible.filter((q) => !keyed.has(q.vm));
    if (kill.length > 0) {
      return { mode: "fencing", cause: `lease ${s.lost.leaseId} lost (${s.lost.reason}); keys not held under lease ${s.leaseId}`, kill, pet: false };
    }
  }
  const pet = petByLease || visible.length === 0;
  // Said even with no ha qemu running: the next start would not be protected either.
  if (refusals.length > 0) return { mode: "refused", cause: refusals.map((r) => `${r.what}: ${r.why}`).join("; "), kill: [], pet };
  if (!s.ha.some((v) => v.qemu) && visible.length === 0) return { mode: "idle", kill: [], pet };
  return { mode: "armed", kill: [], pet };
}
