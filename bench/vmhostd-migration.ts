// The vmhostd side of the migration bench: two daemons on loopback that share one
// `images` pool (the guest's kernel and initrd), and a guest moved between them
// with POST /v1/vms/NAME/migrate, each run to the daemon it is not on.
import { randomBytes } from "node:crypto";
import { chmod, copyFile, writeFile } from "node:fs/promises";
import { freePort as freePortOn } from "../src/net/free-port.js";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ConsoleTail, untilTicking, type ConsoleReader } from "./guest-console.js";
import type { GuestFiles } from "./guest-files.js";
import {
  ALIVE_TICKS,
  guestCmdline,
  MIGRATION_DEADLINE_MS,
  RESUME_DEADLINE_MS,
  untilBooted,
  type MigratingGuest,
  type MigrationCase,
  type MigrationOutcome,
} from "./migration-case.js";
import { BenchDaemon } from "./vmhostd-daemon.js";

/** How often the job is polled; its end time comes from the job itself (endedAt), not from the poll. */
const JOB_POLL_MS = 50;

export interface DaemonPeer {
  daemon: BenchDaemon;
  /** The daemon's TCP API, as the other daemon reaches it. */
  url: string;
}

export const freePort = (host = "127.0.0.1"): Promise<number> => freePortOn(host);

/**
 * Launches the two daemons; each is handed to `own` (for cleanup) right after its
 * spawn, before anything else is awaited.
 */
export async function launchDaemonPair(
  mainJs: string,
  poolDir: string,
  guest: GuestFiles,
  own: (d: BenchDaemon) => void,
  /** Settings of daemon 0 or 1 beyond the pair's own (TLS files, --migration-channels); https: the peers call each other over TLS. */
  more: { args?: (i: number) => string[]; https?: boolean } = {},
): Promise<[DaemonPeer, DaemonPeer]> {
  // mkdtemp makes it 0700: qemu runs as a VM's uid and must pass through to the kernel and initrd.
  await chmod(poolDir, 0o711);
  await copyFile(guest.kernel, path.join(poolDir, "vmlinuz"));
  await copyFile(guest.initrd, path.join(poolDir, "initrd.img"));
  // In a file, as the daemon wants it (a token on the command line is visible to local users).
  const tokenFile = path.join(poolDir, ".peer-token");
  await writeFile(tokenFile, randomBytes(24).toString("hex"), { mode: 0o600 });
  const peers: DaemonPeer[] = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    const extra = ["--listen", `127.0.0.1:${port}`, "--peer-token-file", tokenFile, "--pool", `images=${poolDir}`, ...(more.args?.(i) ?? [])];
    const daemon = await BenchDaemon.launch(mainJs, undefined, "warn", extra);
    own(daemon);
    peers.push({ daemon, url: `${more.https ? "https" : "http"}://127.0.0.1:${port}` });
  }
  for (const p of peers) await p.daemon.waitReady();
  return [peers[0]!, peers[1]!];
}

interface JobView {
  id: string;
  state: string;
  phase?: string;
  endedAt?: string;
  progress?: Record<string, unknown>;
  result?: { totalTimeMs?: number; downtimeMs?: number | null };
  error?: { code: string; detail: string };
}

function apiConsole(d: BenchDaemon, vm: string): ConsoleReader {
  return async (offset) => {
    const r = await d.request("GET", `/v1/vms/${vm}/console/log?offset=${offset}`);
    if (r.status !== 200) throw new Error(`GET console/log: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
    // BenchDaemon parses any reply that looks like JSON: a fragment such as "5" may come
    // back as a number. Taking nothing then is safe: it is read again, longer, next time.
    return typeof r.body === "string" ? Buffer.from(r.body, "utf8") : Buffer.alloc(0);
  };
}

export class VmhostdGuest implements MigratingGuest {
  /** Index in `peers` of the daemon the guest runs on. */
  private at = 0;
  private tail: ConsoleTail;
  private bootId = "";

  private constructor(
    private readonly peers: [DaemonPeer, DaemonPeer],
    readonly name: string,
    private readonly c: MigrationCase,
  ) {
    this.tail = new ConsoleTail(apiConsole(peers[0].daemon, name));
  }

  private get here(): BenchDaemon {
    return this.peers[this.at]!.daemon;
  }

  /** Creates and starts the guest on the first daemon and waits until it is up; returns the argv qemu was given. */
  static async boot(peers: [DaemonPeer, DaemonPeer], c: MigrationCase): Promise<{ guest: VmhostdGuest; argv: string[] }> {
    const g = new VmhostdGuest(peers, `mig-${c.slug}`, c);
    const d = g.here;
    await d.expect(201, "POST", "/v1/vms", {
      name: g.name,
      memoryMiB: c.memoryMiB,
      boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guestCmdline(c) },
    });
    const vm = (await d.expect(200, "POST", `/v1/vms/${g.name}/start`)) as { pid?: number; argv?: unknown };
    d.rememberQemu(vm.pid);
    g.bootId = await untilBooted(g.tail, c, `vmhostd guest ${g.name}`);
    const argv = vm.argv;
    if (!Array.isArray(argv) || !argv.every((a): a is string => typeof a === "string") || argv.length === 0) {
      throw new Error(`the start reply has no argv: ${JSON.stringify(vm).slice(0, 300)}`);
    }
    return { guest: g, argv };
  }

  async pause(): Promise<void> {
    await this.here.expect(200, "POST", `/v1/vms/${this.name}/pause`);
  }

  async resume(): Promise<void> {
    await this.tail.skipToEnd();
    await this.here.expect(200, "POST", `/v1/vms/${this.name}/resume`);
    await untilTicking(this.tail, this.bootId, RESUME_DEADLINE_MS, "VMH-TICK after resume");
  }

  async checkAlive(what: string): Promise<void> {
    await untilTicking(this.tail, this.bootId, RESUME_DEADLINE_MS, `VMH-TICK ${what}`, ALIVE_TICKS);
  }

  async migrate(): Promise<MigrationOutcome> {
    const src = this.here;
    const dst = this.peers[1 - this.at]!;
    const s = this.c.settings;
    const body = {
      destination: dst.url,
      storage: "shared",
      maxDowntimeMs: s.maxDowntimeMs,
      bandwidthMiBps: s.bandwidthMiBps,
      ...(s.autoConverge ? { autoConverge: true } : {}),
    };
    const t0 = performance.now();
    const t0Epoch = Date.now();
    const job = (await src.expect(202, "POST", `/v1/vms/${this.name}/migrate`, body)) as JobView;
    const end = await this.untilEnded(src, job.id, t0);
    if (end.state !== "succeeded") {
      const why = end.error ? `${end.error.code}: ${end.error.detail}` : `job ${end.state}`;
      return { ok: false, why: end.timedOut ? `cancelled after ${MIGRATION_DEADLINE_MS / 1000} s (${why})` : why };
    }
    // The job's own end (ms resolution, same host clock) rather than when the poll noticed it.
    const endedAt = end.endedAt ? Date.parse(end.endedAt) : NaN;
    const totalMs = Number.isFinite(endedAt) ? endedAt - t0Epoch : end.seenAt - t0;
    this.at = 1 - this.at;
    this.tail = new ConsoleTail(apiConsole(this.here, this.name));
    const vm = (await this.here.expect(200, "GET", `/v1/vms/${this.name}`)) as { pid?: number };
    this.here.rememberQemu(vm.pid);
    const downtimeMs = end.result?.downtimeMs;
    const qemuTotal = end.progress?.totalTimeMs;
    if (typeof downtimeMs !== "number") return { ok: false, why: `job succeeded without result.downtimeMs: ${JSON.stringify(end.result)}` };
    return {
      ok: true,
      sample: {
        totalMs,
        downtimeMs,
        qemuTotalMs: typeof qemuTotal === "number" ? qemuTotal : NaN,
        ...(typeof end.result?.totalTimeMs === "number" ? { daemonTotalMs: end.result.totalTimeMs } : {}),
        ...(typeof end.progress?.bytesTransferred === "number" ? { ramBytes: end.progress.bytesTransferred } : {}),
        ...(qemuTotal === 0 ? { figuresUnset: true } : {}),
        ...(end.phases.has("outcome-unknown") ? { outcomeUnknown: true } : {}),
      },
    };
  }

  /** Polls the job to its end; past the deadline, cancels it and waits for the roll-back. */
  private async untilEnded(d: BenchDaemon, id: string, t0: number): Promise<JobView & { seenAt: number; timedOut: boolean; phases: Set<string> }> {
    let timedOut = false;
    const phases = new Set<string>();
    for (;;) {
      const job = (await d.expect(200, "GET", `/v1/jobs/${id}`)) as JobView;
      if (job.phase) phases.add(job.phase);
      if (job.state !== "running") return { ...job, seenAt: performance.now(), timedOut, phases };
      if (!timedOut && performance.now() - t0 > MIGRATION_DEADLINE_MS) {
        timedOut = true;
        await d.request("POST", `/v1/jobs/${id}/cancel`);
      }
      if (performance.now() - t0 > MIGRATION_DEADLINE_MS + 60_000) throw new Error(`migration job ${id} still running 60 s after its cancel`);
      await sleep(JOB_POLL_MS);
    }
  }

  async close(): Promise<void> {
    await this.here.request("POST", `/v1/vms/${this.name}/stop`);
    await this.here.request("DELETE", `/v1/vms/${this.name}`);
  }
}
