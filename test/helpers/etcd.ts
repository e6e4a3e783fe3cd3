// Starts a throw-away single-node etcd (Debian's /usr/bin/etcd) for a test: its own
// temporary data directory, loopback (or a given address) only, never the packaged service.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const etcdBinary = process.env.VMHOSTD_TEST_ETCD ?? "/usr/bin/etcd";

export interface TestEtcd {
  /** Client URL to pass to `--etcd`. */
  url: string;
  host: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  proc: ChildProcess;
  log: () => string;
  /** Resolves true once `/health` reports healthy, false at the deadline. */
  waitHealthy(timeoutMs?: number): Promise<boolean>;
  /** SIGTERM (SIGKILL after 5 s); the data directory is kept, so start() brings back the same data. */
  stop(): Promise<void>;
  /** Starts it again on the same ports and data directory (after stop()). */
  start(): Promise<void>;
  /** Stops it and removes the data directory. */
  cleanup(): Promise<void>;
}

export interface EtcdOptions {
  /** Address to listen on; defaults to 127.0.0.1. */
  host?: string;
  clientPort?: number;
  peerPort?: number;
  /** Run etcd inside this network namespace (through `ip netns exec`). */
  netns?: string;
}

async function freePort(host: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function startEtcd(opts: EtcdOptions = {}): Promise<TestEtcd> {
  const host = opts.host ?? "127.0.0.1";
  // Ports are probed from the test's own namespace; for a netns etcd the caller should pass them.
  const clientPort = opts.clientPort ?? (await freePort(opts.netns ? "127.0.0.1" : host));
  const peerPort = opts.peerPort ?? (await freePort(opts.netns ? "127.0.0.1" : host));
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "vmh-etcd-"));
  const url = `http://${host}:${clientPort}`;
  const output: string[] = [];
  const argv = [
    "--name", "test",
    "--data-dir", dataDir,
    "--listen-client-urls", url,
    "--advertise-client-urls", url,
    "--listen-peer-urls", `http://${host}:${peerPort}`,
    "--initial-advertise-peer-urls", `http://${host}:${peerPort}`,
    "--initial-cluster", `test=http://${host}:${peerPort}`,
    "--initial-cluster-state", "new",
    "--logger", "zap",
    "--log-outputs", "stderr",
  ];
  const launch = (): ChildProcess => {
    const [cmd, args] = opts.netns
      ? ["ip", ["netns", "exec", opts.netns, etcdBinary, ...argv]]
      : [etcdBinary, argv];
    // ETCD_* variables from the environment would change the node's configuration.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("ETCD_")));
    const child = spawn(cmd as string, args as string[], { stdio: ["ignore", "pipe", "pipe"], env });
    child.stdout!.on("data", (b: Buffer) => output.push(b.toString()));
    child.stderr!.on("data", (b: Buffer) => output.push(b.toString()));
    return child;
  };
  const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;
  const e: TestEtcd = {
    url,
    host,
    clientPort,
    peerPort,
    dataDir,
    proc: launch(),
    log: () => output.join(""),
    async waitHealthy(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (exited(e.proc)) return false;
        if (await healthy(host, clientPort, opts.netns)) return true;
        await sleep(100);
      }
      return false;
    },
    async stop() {
      const p = e.proc;
      if (exited(p)) return;
      const gone = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), 5_000);
      await gone;
      clearTimeout(t);
    },
    async start() {
      if (!exited(e.proc)) return;
      e.proc = launch();
      if (!(await e.waitHealthy())) throw new Error(`etcd did not become healthy again:\n${e.log().slice(-4000)}`);
    },
    async cleanup() {
      await e.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  if (!(await e.waitHealthy())) {
    const log = e.log();
    await e.cleanup();
    throw new Error(`etcd did not become healthy:\n${log.slice(-4000)}`);
  }
  return e;
}

async function healthy(host: string, port: number, netns?: string): Promise<boolean> {
  if (netns) {
    // The test's namespace may not reach it; ask from inside.
    return await new Promise((resolve) => {
      const c = spawn("ip", ["netns", "exec", netns, "curl", "-fsS", "-m", "1", `http://${host}:${port}/health`], { stdio: ["ignore", "pipe", "ignore"] });
      let out = "";
      c.stdout!.on("data", (b: Buffer) => (out += b.toString()));
      c.on("exit", () => resolve(/"health":\s*"true"/.test(out)));
      c.on("error", () => resolve(false));
    });
  }
  try {
    const res = await fetch(`http://${host}:${port}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { health?: string };
    return res.ok && body.health === "true";
  } catch {
    return false;
  }
}
