// Re-adoption after SIGKILL, measured the same way by bench/readoption and
// bench/scale: the daemon killed, a new one spawned on the same state, timed
// until the API reports every VM with its running ones `running` from qemu.
import { copyFile, readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { GuestFiles } from "./guest-files.js";
import { BenchDaemon } from "./vmhostd-daemon.js";

export interface ReadoptionFigures {
  /** Spawn of the new daemon → all VMs as expected through the API (ms). */
  wall: number[];
  /** The daemon's own figure: its start-up → every VM adopted (its "VMs adopted" log line). */
  own: number[];
  /** The daemon now running (the last one spawned). */
  daemon: BenchDaemon;
}

export async function readoptionRounds(
  first: BenchDaemon,
  mainJs: string,
  qemuPids: number[],
  opts: { restarts: number; vms: number; running: number; state?: "running" | "paused" },
): Promise<ReadoptionFigures> {
  let daemon = first;
  const wall: number[] = [];
  const own: number[] = [];
  const wanted = opts.state ?? "running";
  for (let run = 0; run < opts.restarts; run++) {
    await daemon.kill();
    const logStart = (await readFile(daemon.logFile, "utf8")).length;
    const t0 = performance.now();
    daemon = await BenchDaemon.launch(mainJs, first.root, "info");
    for (const pid of qemuPids) daemon.rememberQemu(pid);
    await daemon.waitReady();
    for (;;) {
      const r = await daemon.request("GET", "/v1/vms");
      const vms = (r.body as { vms: { state: string; pid?: number }[] }).vms;
      if (vms.length === opts.vms && vms.filter((v) => v.state === wanted && v.pid).length === opts.running) break;
      await sleep(5);
    }
    wall.push(performance.now() - t0);
    // The daemon's own count starts after node has loaded; the log line may trail the API by a moment.
    for (let i = 0; i < 100; i++) {
      const m = /"ms":(\d+)[^\n]*"msg":"VMs adopted"/.exec((await readFile(daemon.logFile, "utf8")).slice(logStart));
      if (m) {
        own.push(Number(m[1]));
        break;
      }
      await sleep(20);
    }
  }
  return { wall, own, daemon };
}

/** Starts each VM (remembered for the bench's clean-up) and returns the qemu pids. */
export async function startGuests(daemon: BenchDaemon, names: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const name of names) {
    const vm = (await daemon.expect(200, "POST", `/v1/vms/${name}/start`)) as { pid: number };
    daemon.rememberQemu(vm.pid);
    pids.push(vm.pid);
  }
  return pids;
}

/**
 * Pauses each VM: a paused qemu costs the machine no CPU but the daemon the same
 * adoption work (process checks, QMP connect, query-status), so a 2-core machine
 * can hold 100 of them.
 */
export async function pauseGuests(daemon: BenchDaemon, names: string[]): Promise<void> {
  for (const name of names) {
    const vm = (await daemon.expect(200, "POST", `/v1/vms/${name}/pause`)) as { state: string };
    if (vm.state !== "paused") throw new Error(`${name}: pause answered state ${vm.state}`);
  }
}

/** Waits until every guest has printed VMH-READY: figures are of idle guests, not of TCG boots fighting over the CPUs. */
export async function waitGuestsReady(daemon: BenchDaemon, names: string[], timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (const name of names) {
    const log = path.join(daemon.stateDir, "vms", name, "console.log");
    while (!(await readFile(log, "utf8").catch(() => "")).includes("VMH-READY") && Date.now() < until) await sleep(200);
  }
}

/** Puts the test guest into the daemon's default pool and defines each VM (96 MiB) booting it. */
export async function defineGuests(daemon: BenchDaemon, guest: GuestFiles, names: string[], extra: Record<string, unknown> = {}): Promise<void> {
  await copyFile(guest.kernel, path.join(daemon.stateDir, "images/vmlinuz"));
  await copyFile(guest.initrd, path.join(daemon.stateDir, "images/initrd.img"));
  for (const name of names) {
    await daemon.expect(201, "POST", "/v1/vms", { name, memoryMiB: 96, boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline }, ...extra });
  }
}
