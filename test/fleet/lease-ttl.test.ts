// `--lease-ttl` below 5 s is refused at start, naming the setting: shorter, a
// daemon restart on a loaded host can miss the fence's deadline (docs/fleet.md).
// No etcd is needed: the settings are checked before anything is contacted.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import t from "tap";
import { daemonNodeFlags, mainJs } from "../helpers/daemon.js";

async function runDaemon(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string }> {
  const root = await mkdtemp(path.join(os.tmpdir(), "vmh-ttl-"));
  try {
    const argv = [...daemonNodeFlags, mainJs, "--state-dir", path.join(root, "state"), "--run-dir", path.join(root, "run"), "--etcd", "http://127.0.0.1:9", ...args];
    const child = spawn(process.execPath, argv, { stdio: ["ignore", "ignore", "pipe"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } });
    let stderr = "";
    child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    const code = await new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    clearTimeout(timer);
    return { code, stderr };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

t.test("--lease-ttl 2 is a start-up error naming the setting", async (t) => {
  const flag = await runDaemon(["--lease-ttl", "2"]);
  t.equal(flag.code, 2, "exits with the configuration error status");
  t.match(flag.stderr, /vmhostd: invalid setting --lease-ttl \(VMHOSTD_LEASE_TTL\): must be at least 5 seconds/);
  const env = await runDaemon([], { VMHOSTD_LEASE_TTL: "4" });
  t.equal(env.code, 2, "from the environment too");
  t.match(env.stderr, /--lease-ttl \(VMHOSTD_LEASE_TTL\)/);
});
