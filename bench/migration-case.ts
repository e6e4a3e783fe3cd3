// What one migration bench case is (guest size, idle or dirtying memory, the
// migration settings both sides use) and what one timed migration yields.
import { bootIdOf, type ConsoleTail } from "./guest-console.js";
import { GUEST_CMDLINE } from "./guest-files.js";

export interface MigrationSettings {
  /** qemu's downtime-limit. */
  maxDowntimeMs: number;
  /** qemu's max-bandwidth, in MiB/s. */
  bandwidthMiBps: number;
  autoConverge: boolean;
}

export interface MigrationCase {
  /** Table label, e.g. "1 GiB dirty 256 MiB". */
  label: string;
  /** Used in the VM's name. */
  slug: string;
  memoryMiB: number;
  /** MiB the guest rewrites continuously (vmh.dirty=), 0 when idle. */
  dirtyMiB: number;
  settings: MigrationSettings;
}

export const MAX_DOWNTIME_MS = 300;
/**
 * vmhostd's own default (src/migration/migration-source.ts), given explicitly to
 * both sides: qemu's default of 128 MiB/s would otherwise cap the by-hand side only.
 */
export const BANDWIDTH_MIBPS = 100_000;
/** A migration still going after this long is cancelled and reported, not waited for. */
export const MIGRATION_DEADLINE_MS = 120_000;

/** 256 MiB and 1 GiB, each idle and dirtying a quarter of its RAM; auto-converge only where the guest dirties. */
export function migrationCases(): MigrationCase[] {
  const sizes = [
    { memoryMiB: 256, name: "256 MiB", dirtyMiB: 64 },
    { memoryMiB: 1024, name: "1 GiB", dirtyMiB: 256 },
  ];
  return sizes.flatMap((s) =>
    [0, s.dirtyMiB].map((dirtyMiB) => ({
      label: dirtyMiB ? `${s.name} dirty ${dirtyMiB} MiB` : `${s.name} idle`,
      slug: `${s.memoryMiB}m-${dirtyMiB ? "dirty" : "idle"}`,
      memoryMiB: s.memoryMiB,
      dirtyMiB,
      settings: { maxDowntimeMs: MAX_DOWNTIME_MS, bandwidthMiBps: BANDWIDTH_MIBPS, autoConverge: dirtyMiB > 0 },
    })),
  );
}

export function guestCmdline(c: MigrationCase): string {
  return c.dirtyMiB ? `${GUEST_CMDLINE} vmh.dirty=${c.dirtyMiB}` : GUEST_CMDLINE;
}

/** One timed migration that completed. */
export interface MigrationSample {
  /** Wall time as the bench measures it for that side. */
  totalMs: number;
  /** qemu's `downtime` from query-migrate on the source. */
  downtimeMs: number;
  /** qemu's `total-time` from query-migrate on the source. */
  qemuTotalMs: number;
  /** vmhostd only: RAM bytes qemu sent (query-migrate's ram.transferred once completed). */
  ramBytes?: number;
  /** vmhostd only: the job's result.totalTimeMs (the daemon's own clock). */
  daemonTotalMs?: number;
  /**
   * vmhostd only: the job reported qemu's total-time and downtime as 0. qemu 7.2 sets
   * the status to completed before it computes them, and a query-migrate in between
   * reads zeros; downtimeMs and qemuTotalMs are then not figures and are left out.
   */
  figuresUnset?: boolean;
  /** vmhostd only: the job passed through phase outcome-unknown (its commit was refused or unanswered). */
  outcomeUnknown?: boolean;
}

export type MigrationOutcome = { ok: true; sample: MigrationSample } | { ok: false; why: string };

export interface SideResult {
  samples: MigrationSample[];
  failures: string[];
  /** Runs after which the guest was found broken (each then replaced by a freshly booted one). */
  broken: number;
}

export interface CaseResult {
  c: MigrationCase;
  vmhostd: SideResult;
  hand: SideResult;
  /** Set when the case could not be run to the end (a guest did not boot...). */
  error?: string;
}

/** What a bench side must offer: a booted guest that can be paused, resumed and moved to the other side. */
export interface MigratingGuest {
  pause(): Promise<void>;
  /** Resumes and returns once the guest's console shows it running again. */
  resume(): Promise<void>;
  /** One timed migration to the other side; on failure the guest runs on where it was. */
  migrate(): Promise<MigrationOutcome>;
  /** Returns once the guest shows it runs on, in the same boot; throws GuestBroken otherwise. */
  checkAlive(what: string): Promise<void>;
  /** Ends the guest (untimed). */
  close(): Promise<void>;
}

/** How long a guest has to print VMH-READY, and VMH-DIRTY (filling RAM from /dev/urandom is slow under TCG). */
export const BOOT_DEADLINE_MS = 180_000;
export const RESUME_DEADLINE_MS = 30_000;
/**
 * VMH-TICKs (0.5 s of guest time each) a guest must print after a migration to count
 * as running on: memory the migration got wrong may take a moment to be used.
 */
export const ALIVE_TICKS = 4;

/** Waits for the guest of case `c` to be up (VMH-READY, and VMH-DIRTY when it dirties memory); returns its boot_id. */
export async function untilBooted(tail: ConsoleTail, c: MigrationCase, who: string): Promise<string> {
  const ready = await tail.waitFor(/VMH-READY/, BOOT_DEADLINE_MS, `VMH-READY (${who})`);
  if (c.dirtyMiB) await tail.waitFor(/VMH-DIRTY \d+/, BOOT_DEADLINE_MS, `VMH-DIRTY (${who})`);
  return bootIdOf(ready);
}
