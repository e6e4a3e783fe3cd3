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
  /** Reads one key through etcd's JSON gateway (the test's own view, not the daemon's). */
  getKey(key: string): Promise<EtcdKey | undefined>;
}

export interface EtcdKey {
  value: string;
  /** The lease the key is bound to, "0" when none. */
  lease: string;
  modRevision: string;
}

export interface EtcdOptions {
  /** Address to listen on; defaults to 127.0.0.1. */
  host?: string;
  clientPort?: number;
  peerPort?: number;
  /** Run etcd inside this network namespace (through `ip netns exec`). */
  netns?: string;
  /** Serve clients over TLS and require a client certificate signed by `ca` (PEM file paths). */
  tls?: { ca: string; cert: string; key: string; clientCert: string; clientKey: string };
}

/** `n` distinct free ports: every listener stays open until all are chosen, so none is handed out twice. */
async function freePorts(host: string, n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let k = 0; k < n; k++) {
      const srv = net.createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, host, () => resolve());
      });
    }
    return servers.map((srv) => (srv.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))));
  }
}

export async function startEtcd(opts: EtcdOptions = {}): Promise<TestEtcd> {
  const host = opts.host ?? "127.0.0.1";
  // Ports are probed from the test's own namespace; for a netns etcd the caller should pass them.
  const [probedClient, probedPeer] = await freePorts(opts.netns ? "127.0.0.1" : host, 2);
  const clientPort = opts.clientPort ?? probedClient!;
  const peerPort = opts.peerPort ?? probedPeer!;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "vmh-etcd-"));
  const url = `${opts.tls ? "https" : "http"}://${host}:${clientPort}`;
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
    ...(opts.tls
      ? ["--cert-file", opts.tls.cert, "--key-file", opts.tls.key, "--trusted-ca-file", opts.tls.ca, "--client-cert-auth"]
      : []),
  ];
  // The test's own requests to etcd: curl, inside the namespace and with the client certificate when needed.
  const curl = (args: string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      const tlsArgs = opts.tls ? ["--cacert", opts.tls.ca, "--cert", opts.tls.clientCert, "--key", opts.tls.clientKey] : [];
      const argv = ["curl", "-fsS", "-m", "2", ...tlsArgs, ...args];
      const c = opts.netns ? spawn("ip", ["netns", "exec", opts.netns, ...argv], { stdio: ["ignore", "pipe", "ignore"] }) : spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "ignore"] });
      let o = "";
      c.stdout!.on("data", (b: Buffer) => (o += b.toString()));
      c.on("exit", (code) => (code === 0 ? resolve(o) : reject(new Error(`curl exited ${code}`))));
      c.on("error", reject);
    });
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
        const health = await curl([`${url}/health`]).catch(() => "");
        if (/"health":\s*"true"/.test(health)) return true;
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
    async getKey(key) {
      const body = JSON.stringify({ key: Buffer.from(key).toString("base64") });
      const out = await curl(["-d", body, `${url}/v3/kv/range`]);
      const kv = (JSON.parse(out) as { kvs?: { value?: string; lease?: string; mod_revision?: string }[] }).kvs?.[0];
      if (!kv) return undefined;
      return { value: Buffer.from(kv.value ?? "", "base64").toString(), lease: kv.lease ?? "0", modRevision: kv.mod_revision ?? "0" };
    },
  };
  if (!(await e.waitHealthy())) {
    const log = e.log();
    await e.cleanup();
    throw new Error(`etcd did not become healthy:\n${log.slice(-4000)}`);
  }
  return e;
}
