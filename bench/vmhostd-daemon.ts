// A throw-away vmhostd for the bench: its own state and run directories, the
// HTTP API reached over its Unix socket with a fresh connection per request
// (as vmctl does), and its resident memory read from /proc.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * The daemon a bench runs: the bundle `npm start` and the systemd unit run
 * (dist/bundle/vmhostd.js, scripts/bundle.mjs), so the figures are what operators
 * get; `BENCH_DAEMON=tsc` runs tsc's dist/src/main.js instead, to compare.
 */
export function daemonEntry(repoRoot: string): string {
  return process.env.BENCH_DAEMON === "tsc" ? path.join(repoRoot, "dist/src/main.js") : path.join(repoRoot, "dist/bundle/vmhostd.js");
}

export interface ApiReply {
  status: number;
  body: unknown;
}

export class BenchDaemon {
  private exited = false;
  private readonly qemuPids = new Set<number>();

  private constructor(
    readonly root: string,
    readonly proc: ChildProcess,
    readonly logFile: string,
  ) {
    proc.once("exit", () => (this.exited = true));
  }

  get stateDir(): string {
    return path.join(this.root, "state");
  }
  get runDir(): string {
    return path.join(this.root, "run");
  }
  get socket(): string {
    return path.join(this.runDir, "vmhostd.sock");
  }

  /**
   * Spawns `node mainJs`; call waitReady next. Nothing after the spawn awaits, so
   * a caller registers the cleanup before a signal handler can run. `extraArgs`
   * go on the daemon's command line after the bench's own (`--listen`, `--pool`...).
   */
  static async launch(mainJs: string, existingRoot?: string, logLevel = "warn", extraArgs: readonly string[] = []): Promise<BenchDaemon> {
    // Short on purpose: QMP and console socket paths below it must fit in 107 bytes.
    // An existing root starts a daemon on the state an earlier one left (re-adoption).
    const root = existingRoot ?? (await mkdtemp("/tmp/vb-"));
    try {
      return await BenchDaemon.spawnOn(root, mainJs, logLevel, extraArgs);
    } catch (err) {
      // Not yet handed to the caller, who could not clean it up.
      if (!existingRoot) await rm(root, { recursive: true, force: true });
      throw err;
    }
  }

  private static async spawnOn(root: string, mainJs: string, logLevel: string, extraArgs: readonly string[]): Promise<BenchDaemon> {
    // mkdtemp makes it 0700; qemu runs unprivileged and must pass through to its files.
    await chmod(root, 0o711);
    await mkdir(path.join(root, "state", "images"), { recursive: true });
    await mkdir(path.join(root, "run"), { recursive: true });
    const flags = await daemonNodeFlags(mainJs);
    const logFile = path.join(root, "vmhostd.log");
    const log = openSync(logFile, "a");
    const args = [mainJs, "--state-dir", path.join(root, "state"), "--run-dir", path.join(root, "run")];
    // Own process group: a Ctrl-C at the terminal reaches only the bench, which then stops the VMs first.
    const proc = spawn(process.execPath, [...flags, ...args, "--accel", "tcg", "--log-level", logLevel, ...extraArgs], {
      stdio: ["ignore", log, log],
      detached: true,
    });
    closeSync(log);
    return new BenchDaemon(root, proc, logFile);
  }

  request(method: string, urlPath: string, body?: unknown, timeoutMs = 120_000): Promise<ApiReply> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socket,
          method,
          path: urlPath,
          agent: false,
          timeout: timeoutMs,
          headers: payload ? { "content-type": "application/json", "content-length": Buffer.byteLength(payload) } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              // not JSON (an error page): keep the text for the message
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`${method} ${urlPath}: no answer in ${timeoutMs} ms`)));
      req.on("error", reject);
      req.end(payload);
    });
  }

  /** Like request, but any status other than `want` is an error naming the reply. */
  async expect(want: number, method: string, urlPath: string, body?: unknown): Promise<unknown> {
    const r = await this.request(method, urlPath, body);
    if (r.status !== want) {
      throw new Error(`${method} ${urlPath}: expected ${want}, got ${r.status}: ${JSON.stringify(r.body).slice(0, 500)}`);
    }
    return r.body;
  }

  /** VmRSS of the daemon process, in KiB. */
  async rssKiB(): Promise<number> {
    const status = await readFile(`/proc/${this.proc.pid}/status`, "utf8");
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    if (!m) throw new Error(`no VmRSS in /proc/${this.proc.pid}/status`);
    return Number(m[1]);
  }

  async log(): Promise<string> {
    return readFile(this.logFile, "utf8").catch(() => "");
  }

  /**
   * Stops the named VMs (qemu outlives the daemon by design), SIGTERMs the daemon
   * (SIGKILL after 10 s), kills any qemu of ours it left, then removes its directories.
   */
  async shutdown(vms: string[] = []): Promise<void> {
    if (!this.exited) {
      for (const vm of vms) await this.request("POST", `/v1/vms/${vm}/stop`, undefined, 30_000).catch(() => undefined);
    }
    if (!this.exited) {
      const gone = new Promise((r) => this.proc.once("exit", r));
      this.proc.kill("SIGTERM");
      const late = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
      await gone;
      clearTimeout(late);
    }
    await Promise.all([...this.qemuPids].map((pid) => killIfOurs(pid, this.root)));
    // A qemu that was SIGKILLed a moment ago may still be removing its sockets: retry on ENOTEMPTY.
    await rm(this.root, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }

  /** SIGKILL, as a crash would; the VMs are left running. */
  async kill(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGKILL");
    await gone;
  }

  /** Records a qemu pid from a start reply, to be killed at shutdown if it is still there. */
  rememberQemu(pid: unknown): void {
    if (typeof pid === "number" && pid > 0) this.qemuPids.add(pid);
  }

  /** Resolves once /healthz answers 200. */
  async waitReady(deadlineMs = 30_000): Promise<void> {
    const until = performance.now() + deadlineMs;
    while (performance.now() < until) {
      if (this.exited) throw new Error(`vmhostd exited at start:\n${await this.log()}`);
      const ok = await this.request("GET", "/healthz", undefined, 1000).then(
        (r) => r.status === 200,
        () => false, // not listening yet
      );
      if (ok) return;
      await sleep(25);
    }
    throw new Error(`vmhostd not ready in ${deadlineMs} ms:\n${await this.log()}`);
  }
}

/**
 * The node flags the daemon is meant to run with, from its own `#!/usr/bin/env -S node ...`
 * line (the systemd unit and `npm start` use the same), so the bench measures what operators run.
 */
async function daemonNodeFlags(mainJs: string): Promise<string[]> {
  if (process.env.BENCH_NODE_FLAGS !== undefined) return process.env.BENCH_NODE_FLAGS.split(" ").filter(Boolean);
  const first = (await readFile(mainJs, "utf8")).split("\n", 1)[0] ?? "";
  const m = /^#!\S*env -S node(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
}

/**
 * SIGKILLs pid only while its command line still names our directory (the pid may
 * have been reused), then waits (up to 10 s) until it has gone, so its directories
 * can be removed.
 */
async function killIfOurs(pid: number, root: string): Promise<void> {
  const ours = async (): Promise<boolean> => (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).includes(root);
  if (!(await ours())) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return; // gone meanwhile
  }
  for (let i = 0; i < 200 && (await ours()); i++) await sleep(50);
}
