// The daemon's side of fencing: keeps the fence process running (one per host,
// detached like qemu, so it outlives this daemon and is found again by the next
// one) and tells it, through the shared state file, when the lease was last
// renewed, which lease that was, whether a lease was lost, and which qemus of `ha`
// VMs run here (by their recorded identity). Only confirmed renewals move the
// time forward; a lost or replaced lease is written at once as "fence now", and
// stays written until every ha VM still running holds its key under the new lease.
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { setFenceStatus } from "../../metrics/metric-hooks.js";
import { spawnChild } from "../../host/child-process.js";
import type { FleetMember, LeaseRenewal } from "../fleet-member.js";
import { nextLoss } from "./fence-decision.js";
import { FENCE_PROTOCOL, PID_FILE, STATE_FILE, STATUS_FILE, fenceDir, fenceMarginMs, type FenceState, type FenceStatus, type FenceVm } from "./fence-state.js";

const fenceMain = path.join(path.dirname(fileURLToPath(import.meta.url)), "fence-main.js");
/** The ha list is checked this often (and written if it changed), so a VM defined or made ha is covered within it. */
const REFRESH_MS = 500;
/** A status.json older than this: the fence process is not running its loop (it rewrites it every second). */
const STATUS_STALE_MS = 3_000;

/** What the daemon shows of its fence (GET /v1/host's fleet section, the registry entry, metrics). */
export interface FenceReport extends Partial<Omit<FenceStatus, "mode">> {
  mode: FenceStatus["mode"] | "unresponsive" | "starting";
  /** True only when the fence process confirms it protects every running ha VM. */
  armed: boolean;
}

export interface FenceSettings {
  watchdog?: { device: string; timeoutMs: number };
}

/**
 * Atomic (the fence reads the old file or the new one) but not durable: no fsync.
 * The file lives in the run directory, which a reboot clears, and only the live
 * fence process reads it; an fsync on a loaded disk would delay a "fence now".
 */
async function replaceFile(file: string, content: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, content, { mode: 0o600 });
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export class FenceSupervisor {
  readonly dir: string;
  private timer: NodeJS.Timeout | undefined;
  private writing = Promise.resolve();
  /** What was last written, less its time stamp: an unchanged state is not written again. */
  private lastWritten = "";
  /** The lease named by the last state written (by this daemon or the one before it). */
  private writtenLease: string | undefined;
  private lost: FenceState["lost"];
  private statusValue: FenceReport = { mode: "starting", armed: false };

  constructor(
    private readonly runDir: string,
    private readonly fleet: FleetMember,
    /** Every `ha` VM defined here, with its running qemu's identity if one runs. */
    private readonly haVms: () => Omit<FenceVm, "keyLease">[],
    private readonly log: Logger,
    private readonly settings: FenceSettings = {},
  ) {
    this.dir = fenceDir(runDir);
  }

  get status(): FenceReport {
    return this.statusValue;
  }

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const previous = await readFile(path.join(this.dir, STATE_FILE), "utf8").then((t) => JSON.parse(t) as Partial<FenceState>, () => undefined);
    this.writtenLease = previous?.leaseId;
    if (previous?.lost) this.lost = previous.lost;
    this.fleet.on("renewed", (r: LeaseRenewal) => this.write(r));
    this.fleet.on("lease-lost", (leaseId: string, reason: string) => this.leaseLost(leaseId, reason));
    this.fleet.keys.onHaKey = () => this.sync();
    this.fleet.fenceReport = () => this.statusValue;
    // The state first: a fence process started now reads this daemon's view at once.
    const r = this.fleet.renewal;
    if (r) this.write(r);
    await this.writing;
    await this.ensureProcess();
    this.timer = setInterval(() => {
      const r = this.fleet.renewal;
      if (r) this.write(r);
      void this.ensureProcess().catch((err: unknown) => this.log.error({ err }, "cannot run the fence process"));
      void this.readStatus();
    }, REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Writes the current state now (if changed) and resolves once it is on disk: before an ha qemu may start under a new key. */
  async sync(): Promise<void> {
    const r = this.fleet.renewal;
    if (r) this.write(r);
    await this.writing;
  }

  /** A lease this host held is gone: "fence now", written at once, before anything else. */
  private leaseLost(leaseId: string, reason: string): void {
    this.lost = { leaseId, reason, at: new Date().toISOString() };
    this.log.error({ lease: leaseId, reason }, "lease lost: the fence kills every ha qemu not keyed under a new lease");
    const r = this.fleet.renewal;
    this.write(r ?? { leaseId, sentAtBootNs: 0n, ttlSec: this.fleet.ttlSec });
  }

  /** Serialised: an older renewal must never overwrite a newer one. */
  private write(r: LeaseRenewal): void {
    const ha = this.haVms().map((v) => {
      const keyLease = this.fleet.keys.keyLease(v.name);
      return { ...v, ...(keyLease ? { keyLease } : {}) };
    });
    const before = this.lost;
    const next = nextLoss(this.lost, this.writtenLease, r.leaseId, ha, new Date().toISOString());
    this.lost = next.lost;
    if (next.change === "replaced") this.log.error({ lease: this.writtenLease, now: r.leaseId }, "the host lease was replaced: its ha keys are gone");
    if (next.change === "ended") this.log.info({ lost: before?.leaseId, lease: r.leaseId }, "every running ha VM is keyed under the new lease: the fence disarms its loss");
    const state: Omit<FenceState, "writtenAt"> = {
      leaseId: r.leaseId,
      ...(r.sentAtBootNs > 0n ? { renewedSentAtBootNs: r.sentAtBootNs.toString() } : {}),
      ttlMs: r.ttlSec * 1000,
      marginMs: fenceMarginMs(r.ttlSec * 1000),
      ...(this.lost ? { lost: this.lost } : {}),
      runDir: this.runDir,
      ha,
      ...(this.settings.watchdog ? { watchdog: this.settings.watchdog } : {}),
    };
    const content = JSON.stringify(state);
    if (content === this.lastWritten) return;
    this.lastWritten = content;
    this.writtenLease = r.leaseId;
    const file: FenceState = { ...state, writtenAt: new Date().toISOString() };
    this.writing = this.writing
      .then(() => replaceFile(path.join(this.dir, STATE_FILE), JSON.stringify(file) + "\n"))
      .catch((err: unknown) => {
        this.lastWritten = ""; // tried again at the next refresh
        this.log.error({ err }, "cannot write the fence state");
      });
  }

  /** What the fence process last said of itself; a stale word means it is not running its loop. */
  private async readStatus(): Promise<void> {
    const s = await readFile(path.join(this.dir, STATUS_FILE), "utf8").then((t) => JSON.parse(t) as FenceStatus, () => undefined);
    let next: FenceReport;
    if (!s) next = { mode: "starting", armed: false };
    else if (Date.now() - Date.parse(s.at) > STATUS_STALE_MS) next = { ...s, mode: "unresponsive", armed: false, cause: `no word from the fence process since ${s.at}` };
    else next = { ...s, armed: s.mode === "armed" };
    const before = this.statusValue;
    this.statusValue = next;
    setFenceStatus(next.armed, next.refusals?.length ?? 0);
    if (before.mode !== next.mode || before.cause !== next.cause) {
      const fields = { mode: next.mode, cause: next.cause, refusals: next.refusals };
      if (next.mode === "refused" || next.mode === "unresponsive" || next.mode === "fencing") this.log.error(fields, "the fence does not protect this host's ha VMs");
      else this.log.info(fields, "fence status");
    }
  }

  /** The fence process of an earlier daemon is reused if it speaks this protocol; another is replaced; a missing one is started. */
  private async ensureProcess(): Promise<void> {
    const pid = Number((await readFile(path.join(this.dir, PID_FILE), "utf8").catch(() => "")).trim());
    if (pid > 0) {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0");
      if (cmdline.some((a) => a.endsWith("fence-main.js")) && cmdline.includes(this.dir)) {
        if (cmdline.includes("--protocol") && cmdline[cmdline.indexOf("--protocol") + 1] === FENCE_PROTOCOL) return;
        // An older fence reads the state file differently: the new one starts as soon as it has gone.
        this.log.warn({ pid }, "replacing a fence process of another protocol");
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          // gone already
        }
      }
    }
    const out = openSync(path.join(this.dir, "fence.log"), "a", 0o600);
    try {
      const child = spawnChild(process.execPath, [fenceMain, "--dir", this.dir, "--protocol", FENCE_PROTOCOL], { detached: true, stdio: ["ignore", out, out] });
      await new Promise<void>((resolve, reject) => {
        child.once("spawn", resolve);
        child.once("error", reject);
      });
      child.unref();
      await writeFile(path.join(this.dir, PID_FILE), `${child.pid}\n`);
      this.log.info({ pid: child.pid, dir: this.dir }, "fence process started");
    } finally {
      closeSync(out);
    }
  }
}
