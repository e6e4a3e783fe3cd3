// Starts a real vmhostd in throw-away directories for a test, and the means to
// talk to it, kill it and start it again on the same state.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ApiClient } from "../../src/cli/api-client.js";
import { distRoot } from "./dist-root.js";
import { ensureGuest, parseGuestMarkers, type GuestMarkers } from "./guest.js";

export { distRoot };

export const mainJs = path.join(distRoot, "src/main.js");
export const vmctlJs = path.join(distRoot, "src/cli/vmctl.js");

/** The node flags on main.js's `#!/usr/bin/env -S node ...` line: tests run the daemon as operators do. */
export const daemonNodeFlags: string[] = (() => {
  const first = readFileSync(mainJs, "utf8").split("\n", 1)[0] ?? "";
  const m = /^#!\S*env -S node(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter(Boolean) : [];
})();

export interface TestDaemon {
  root: string;
  stateDir: string;
  runDir: string;
  socket: string;
  api: ApiClient;
  proc: ChildProcess;
  log: () => string;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts the daemon again on the same directories. */
  restart(extraArgs?: string[]): Promise<void>;
  /** SIGTERM, then removes every qemu it left and the directories. */
  cleanup(): Promise<void>;
}

export interface DaemonOptions {
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Run the daemon in its own process group, as a shell would run a foreground job. */
  detached?: boolean;
  /** Put the state directory on a tmpfs of this size, so a test can fill it. */
  stateTmpfsMiB?: number;
  /**
   * Run the daemon (and so its qemus and taps) in this network namespace, through
   * `ip netns exec`, which execs in place: the pid is still the daemon's. The API's
   * Unix socket stays reachable, as the filesystem is shared.
   */
  netns?: string;
  /**
   * A --listen without --tls-cert gets --insecure-listen added (a non-loopback address
   * needs one or the other); set this to start the daemon exactly as given.
   */
  exactArgs?: boolean;
  /**
   * Enter `netns` with `nsenter --net` instead: only the network namespace changes.
   * `ip netns exec` mounts a sysfs of the namespace over /sys, which hides the cgroup
   * mounts below it (and shows the namespace's /sys/class/net, which this does not).
   */
  netnsKeepSys?: boolean;
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  // Short: Unix socket paths below it must fit in 107 bytes.
  const root = await mkdtemp(path.join(os.tmpdir(), "vmh-"));
  // mkdtemp makes it 0700; the VMs' unprivileged qemus must pass through it.
  await chmod(root, 0o711);
  const stateDir = path.join(root, "state");
  const runDir = path.join(root, "run");
  const socket = path.join(runDir, "vmhostd.sock");
  await mkdir(stateDir, { recursive: true });
  if (opts.stateTmpfsMiB) {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${opts.stateTmpfsMiB}m`, "tmpfs", stateDir]);
  }
  await mkdir(path.join(stateDir, "images"), { recursive: true });
  const output: string[] = [];
  const d: TestDaemon = {
    root,
    stateDir,
    runDir,
    socket,
    api: new ApiClient({ socketPath: socket }),
    proc: undefined as unknown as ChildProcess,
    log: () => output.join(""),
    async kill() {
      d.proc.kill("SIGKILL");
      await new Promise((r) => (d.proc.exitCode !== null || d.proc.signalCode ? r(null) : d.proc.once("exit", r)));
    },
    async restart(extraArgs = []) {
      d.proc = await launch([...(opts.args ?? []), ...extraArgs]);
    },
    async cleanup() {
      if (d.proc.exitCode === null && !d.proc.signalCode) {
        d.proc.kill("SIGTERM");
        await new Promise((r) => d.proc.once("exit", r));
      }
      await killQemusUnder(root);
      await removeVmCgroups(runDir);
      await stopFenceProcess(runDir);
      if (opts.stateTmpfsMiB) {
        await sleep(200);
        execFileSync("umount", ["-l", stateDir]);
      }
      await rm(root, { recursive: true, force: true });
    },
  };
  const launch = async (given: string[]): Promise<ChildProcess> => {
    const plainTcp = given.includes("--listen") && !given.includes("--tls-cert") && !given.includes("--insecure-listen");
    const args = plainTcp && !opts.exactArgs ? [...given, "--insecure-listen"] : given;
    const daemonArgv = [...daemonNodeFlags, mainJs, "--state-dir", stateDir, "--run-dir", runDir, "--accel", "tcg", "--log-level", "debug", ...args];
    const viaNetns = opts.netns === undefined
      ? []
      : opts.netnsKeepSys
        ? ["nsenter", `--net=/run/netns/${opts.netns}`, "--"]
        : ["ip", "netns", "exec", opts.netns];
    const proc = spawn(
      viaNetns[0] ?? process.execPath,
      viaNetns.length > 0 ? [...viaNetns.slice(1), process.execPath, ...daemonArgv] : daemonArgv,
      { env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"], detached: opts.detached ?? false },
    );
    proc.stdout!.on("data", (c: Buffer) => output.push(c.toString()));
    proc.stderr!.on("data", (c: Buffer) => output.push(c.toString()));
    // One that never got ready is not left running: no teardown has a handle on it.
    await waitReady(d.api, proc, output).catch((err: unknown) => {
      proc.kill("SIGKILL");
      throw err;
    });
    return proc;
  };
  d.proc = await launch(opts.args ?? []);
  return d;
}

async function waitReady(api: ApiClient, proc: ChildProcess, output: string[]): Promise<void> {
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`vmhostd exited (${proc.exitCode}):\n${output.join("")}`);
    try {
      const res = await api.request("GET", "/healthz", undefined, 1000);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  throw new Error(`vmhostd not ready in 30 s:\n${output.join("")}`);
}

/** Fleet mode's fence process outlives the daemon by design; a test's ends with it (it writes its status every second). */
async function stopFenceProcess(runDir: string): Promise<void> {
  const { readFile } = await import("node:fs/promises");
  const pid = Number((await readFile(path.join(runDir, "fence", "fence.pid"), "utf8").catch(() => "")).trim());
  if (!(pid > 0) || !(await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).includes(runDir)) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  for (let i = 0; i < 40 && (await readFile(`/proc/${pid}/stat`, "utf8").then((s) => !/\) Z /.test(s), () => false)); i++) await sleep(25);
}

/**
 * The cgroups of this daemon's VMs (src/limits/vm-cgroup.ts): a qemu killed after
 * its daemon has no daemon left to remove its cgroup. Each is empty once its
 * qemu has gone, which takes a moment after the SIGKILL.
 */
async function removeVmCgroups(runDir: string): Promise<void> {
  const { readdir } = await import("node:fs/promises");
  const { removeVmCgroup, vmCgroupLeaf } = await import("../../src/limits/vm-cgroup.js");
  const names = await readdir(path.join(runDir, "vms")).catch(() => [] as string[]);
  for (const name of names) {
    const leaf = vmCgroupLeaf(name, path.join(runDir, "vms", name));
    for (let i = 0; i < 20 && !(await removeVmCgroup(leaf)); i++) await sleep(50);
  }
}

/** Kills every qemu whose command line mentions this test's directory. */
export async function killQemusUnder(root: string): Promise<void> {
  const { readdir, readFile } = await import("node:fs/promises");
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes("qemu-system") && cmd.includes(root)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
}

/** Copies the test guest's kernel and initrd into the daemon's images pool. */
export async function installGuest(d: TestDaemon): Promise<{ kernel: string; initrd: string; cmdline: string }> {
  const g = await ensureGuest();
  await copyFile(g.kernel, path.join(d.stateDir, "images", "vmlinuz"));
  await copyFile(g.initrd, path.join(d.stateDir, "images", "initrd.img"));
  return { kernel: "vmlinuz", initrd: "initrd.img", cmdline: g.cmdline };
}

/** Polls the console log until `pattern` appears (or the deadline passes). */
export async function waitForConsole(d: TestDaemon, vm: string, pattern: RegExp, timeoutMs = 60_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  let text = "";
  while (Date.now() < until) {
    const res = await d.api.request("GET", `/v1/vms/${vm}/console/log`);
    text = res.body.toString("utf8");
    if (pattern.test(text)) return text;
    await sleep(100);
  }
  throw new Error(`console of ${vm} did not show ${pattern} within ${timeoutMs} ms; last output:\n${text.slice(-2000)}`);
}

/** Waits until the console shows the `n`th boot of the guest reaching its ready marker. */
export async function waitForBoot(d: TestDaemon, vm: string, n: number, timeoutMs = 60_000): Promise<GuestMarkers> {
  const until = Date.now() + timeoutMs;
  let m: GuestMarkers | undefined;
  while (Date.now() < until) {
    const res = await d.api.request("GET", `/v1/vms/${vm}/console/log`);
    m = parseGuestMarkers(res.body.toString("utf8"));
    if (m.bootIds.length >= n && m.ready) return m;
    await sleep(100);
  }
  throw new Error(`${vm}: boot ${n} not ready within ${timeoutMs} ms (saw ${m?.bootIds.length ?? 0})`);
}

/** The console log read straight from disk: works while the daemon is down. */
export async function consoleFromDisk(d: TestDaemon, vm: string): Promise<GuestMarkers> {
  const { readFile } = await import("node:fs/promises");
  return parseGuestMarkers(await readFile(path.join(d.stateDir, "vms", vm, "console.log"), "utf8").catch(() => ""));
}

/** Defines a VM booting the test guest; `extra` overrides definition fields. */
export async function defineGuestVm(d: TestDaemon, name: string, extra: Record<string, unknown> = {}): Promise<void> {
  const g = await installGuest(d);
  await d.api.json("POST", "/v1/vms", {
    name,
    memoryMiB: 128,
    boot: { kernel: g.kernel, initrd: g.initrd, cmdline: g.cmdline },
    ...extra,
  });
}

/** Defines a VM booting the test guest with an interactive shell on its serial console (prompt `vmh# `). */
export async function defineShellVm(d: TestDaemon, name: string): Promise<void> {
  const g = await installGuest(d);
  await defineGuestVm(d, name, { boot: { kernel: g.kernel, initrd: g.initrd, cmdline: `${g.cmdline} vmh.shell=1` } });
}

/** Polls GET /v1/vms/NAME until `ok` holds for the VM object (or the deadline passes). */
export async function waitForVm<T = Record<string, unknown>>(
  d: TestDaemon,
  vm: string,
  ok: (v: T) => boolean,
  timeoutMs = 30_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < until) {
    const res = await d.api.request("GET", `/v1/vms/${vm}`).catch(() => undefined);
    if (res && res.status === 200) {
      last = JSON.parse(res.body.toString()) as T;
      if (ok(last)) return last;
    }
    await sleep(50);
  }
  throw new Error(`${vm}: condition not met within ${timeoutMs} ms; last: ${JSON.stringify(last)?.slice(0, 500)}`);
}

export interface VmctlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs vmctl against the daemon's socket, as an operator's shell would; never throws on a non-zero exit. */
export async function runVmctl(d: TestDaemon, ...args: string[]): Promise<VmctlResult> {
  const { execFile } = await import("node:child_process");
  return new Promise((resolve) => {
    execFile(process.execPath, [vmctlJs, "--socket", d.socket, ...args], { timeout: 180_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Where the VM's console log ends now: pass it to consoleAfter to wait for what comes next. */
export async function consoleSize(d: TestDaemon, vm: string): Promise<number> {
  const res = await d.api.request("GET", `/v1/vms/${vm}/console/log?offset=0`);
  return Number(res.headers["x-console-next-offset"]);
}

/** Waits for `pattern` in the console output written after byte `offset`; returns the match. */
export async function consoleAfter(d: TestDaemon, vm: string, offset: number, pattern: RegExp, timeoutMs = 60_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  let text = "";
  while (Date.now() < until) {
    text = (await d.api.request("GET", `/v1/vms/${vm}/console/log?offset=${offset}`)).body.toString("utf8");
    const m = pattern.exec(text);
    if (m) return m[0];
    await sleep(200);
  }
  throw new Error(`console of ${vm} did not show ${pattern} within ${timeoutMs} ms; last output:\n${text.slice(-1500)}`);
}

/** A request expected to be refused: its status and the problem's code. */
export async function problem(d: TestDaemon, method: string, url: string, body?: unknown): Promise<{ status: number; code?: string }> {
  const res = await d.api.request(method, url, body);
  const parsed = res.body.length ? (JSON.parse(res.body.toString()) as { code?: string }) : {};
  return { status: res.status, code: parsed.code };
}
