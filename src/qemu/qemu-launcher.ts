// Launching qemu so that it outlives the daemon: its own session and process
// group (detached), stdio to a per-VM log file rather than pipes that would die
// with us, and no shell anywhere (argv array).
import { open } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { QemuFailed } from "../errors.js";
import { spawnChild } from "../host/child-process.js";
import type { QemuIdentity } from "./qemu-user.js";
import { readProcStartTicks, isSameProcess } from "./qemu-process.js";

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LaunchedQemu {
  pid: number;
  procStartTicks: number;
  /** Resolves when the process ends (only for processes this daemon spawned). */
  exit: Promise<ProcessExit>;
}

export async function launchQemu(binary: string, argv: string[], logFile: string, identity?: QemuIdentity): Promise<LaunchedQemu> {
  const log = await open(logFile, "a", 0o640);
  try {
    // Started as its unprivileged uid from the first instruction (as libvirt does): qemu's
    // own -runas drops privileges only after its seccomp filter forbids doing so.
    const child = spawnChild(binary, argv, { detached: true, stdio: ["ignore", log.fd, log.fd], ...(identity ?? {}) });
    const exit = new Promise<ProcessExit>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    const pid = await new Promise<number>((resolve, reject) => {
      child.once("spawn", () => resolve(child.pid!));
      child.once("error", (err) => reject(new QemuFailed(`cannot run ${binary}: ${err.message}`)));
    });
    // The daemon must never wait on qemu to exit before it may exit itself.
    child.unref();
    const ticks = await readProcStartTicks(pid);
    if (ticks === undefined) {
      const ended = await exit;
      throw new QemuFailed(`qemu exited at once (code ${ended.code}, signal ${ended.signal})`);
    }
    return { pid, procStartTicks: ticks, exit };
  } finally {
    // qemu holds its own copy of the descriptor.
    await log.close();
  }
}

/**
 * Resolves when a process that is not our child (adopted after a daemon restart)
 * has gone. Polls /proc: there is no exit notification for a non-child.
 */
export async function waitForProcessGone(pid: number, startTicks: number, signal?: AbortSignal, everyMs = 200): Promise<void> {
  while (!signal?.aborted) {
    if (!(await isSameProcess(pid, startTicks))) return;
    await sleep(everyMs, undefined, { signal }).catch(() => {});
  }
}
