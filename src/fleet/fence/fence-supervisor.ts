// The daemon's side of fencing: keeps the fence process running (one per host,
// detached like qemu, so it outlives this daemon and is found again by the next
// one) and tells it, through the shared state file, when the lease was last
// renewed and which VMs are `ha`. Only confirmed renewals move the time forward,
// so a daemon that is frozen, killed or cut off from etcd stops moving it, and
// the fence acts before etcd can let the lease (and the ha owner keys) go.
import { closeSync, openSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { spawnChild } from "../../host/child-process.js";
import { writeFileAtomic } from "../../store/atomic-file.js";
import type { FleetMember, LeaseRenewal } from "../fleet-member.js";
import { PID_FILE, STATE_FILE, fenceDir, fenceMarginMs, type FenceState } from "./fence-state.js";

const fenceMain = path.join(path.dirname(fileURLToPath(import.meta.url)), "fence-main.js");
/** The ha list is checked this often (and written if it changed), so a VM defined or made ha is covered within it. */
const REFRESH_MS = 500;

export class FenceSupervisor {
  readonly dir: string;
  private timer: NodeJS.Timeout | undefined;
  private writing = Promise.resolve();
  /** What was last written, less its time stamp: an unchanged state is not written again. */
  private lastWritten = "";

  constructor(
    private readonly runDir: string,
    private readonly fleet: FleetMember,
    private readonly haVms: () => { name: string; uuid: string }[],
    private readonly log: Logger,
  ) {
    this.dir = fenceDir(runDir);
  }

  async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.ensureProcess();
    this.fleet.on("renewed", (r: LeaseRenewal) => this.write(r));
    this.timer = setInterval(() => {
      const r = this.fleet.renewal;
      if (r) this.write(r);
      void this.ensureProcess().catch((err: unknown) => this.log.error({ err }, "cannot run the fence process"));
    }, REFRESH_MS);
    this.timer.unref();
    const r = this.fleet.renewal;
    if (r) this.write(r);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Serialised: an older renewal must never overwrite a newer one. */
  private write(r: LeaseRenewal): void {
    const state: Omit<FenceState, "writtenAt"> = {
      leaseId: r.leaseId,
      renewedSentAtNs: r.sentAtNs.toString(),
      ttlMs: r.ttlSec * 1000,
      marginMs: fenceMarginMs(r.ttlSec * 1000),
      runDir: this.runDir,
      ha: this.haVms(),
    };
    const content = JSON.stringify(state);
    if (content === this.lastWritten) return;
    this.lastWritten = content;
    const file: FenceState = { ...state, writtenAt: new Date().toISOString() };
    this.writing = this.writing
      .then(() => writeFileAtomic(path.join(this.dir, STATE_FILE), JSON.stringify(file) + "\n", 0o600))
      .catch((err: unknown) => {
        this.lastWritten = ""; // tried again at the next refresh
        this.log.error({ err }, "cannot write the fence state");
      });
  }

  /** The fence process of an earlier daemon is reused; a missing one is started. */
  private async ensureProcess(): Promise<void> {
    const pid = Number((await readFile(path.join(this.dir, PID_FILE), "utf8").catch(() => "")).trim());
    if (pid > 0) {
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
      if (cmdline.includes("fence-main.js") && cmdline.includes(this.dir)) return;
    }
    const out = openSync(path.join(this.dir, "fence.log"), "a", 0o600);
    try {
      const child = spawnChild(process.execPath, [fenceMain, "--dir", this.dir], { detached: true, stdio: ["ignore", out, out] });
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
