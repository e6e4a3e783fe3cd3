// How a VM's qemu ended, named and recorded: the reason its last exit shows
// (a crash or the daemon's own stop, a guest that powered off), and the files
// that say so to a daemon that restarts later.
import { readFile, rm } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import { VM_FENCED_FILE, type FencedRecord } from "../fleet/fence/fence-state.js";
import { removeLastExit, removeRuntimeRecord, writeLastExit, type LastExit } from "../store/runtime-store.js";
import type { VmPaths } from "../store/vm-paths.js";
import type { SessionExit } from "./qemu-session.js";

/** The last exit of a qemu that ended: `expected` is the reason the daemon gave if it ended qemu itself. */
export function lastExitOf(exit: SessionExit, expected: string | undefined, fenced?: FencedRecord): LastExit {
  return {
    at: new Date().toISOString(),
    reason: fenced ? "fenced" : exitReason(exit, expected),
    exitCode: exit.code,
    signal: exit.signal,
    ...(fenced ? { detail: fencedDetail(fenced) } : exit.shutdownReason ? { detail: `qemu shutdown reason: ${exit.shutdownReason}` } : {}),
  };
}

export function fencedDetail(f: FencedRecord): string {
  return `killed by the fence (pid ${f.pid}${f.leaseId ? `, lease ${f.leaseId}` : ""}): ${f.cause}`;
}

/**
 * The fence process's record that it killed this very qemu (pid and start time),
 * written beside the runtime record before the kill; taken (removed) once read.
 */
export async function takeFencedRecord(runDir: string, pid: number, startTicks: number): Promise<FencedRecord | undefined> {
  const file = path.join(runDir, VM_FENCED_FILE);
  const text = await readFile(file, "utf8").catch(() => undefined);
  if (text === undefined) return undefined;
  await rm(file, { force: true }).catch(() => {});
  try {
    const r = JSON.parse(text) as FencedRecord;
    return r.pid === pid && (r.startTicks === undefined || r.startTicks === startTicks) ? r : undefined;
  } catch {
    return undefined;
  }
}

function exitReason(exit: SessionExit, expected: string | undefined): string {
  if (expected) return expected;
  // The guest powered itself off (or answered our ACPI request after we gave up waiting).
  if (exit.shutdownReason === "guest-shutdown") return "guest-shutdown";
  if (exit.shutdownReason === "host-qmp-quit") return "host-stop";
  return "crashed";
}

/**
 * How the run ended, as far as the disks let it be recorded. A state disk that
 * cannot take the last exit (full) must not leave an older one standing: a stale
 * "crashed" would have a restarted daemon start the VM again. The runtime record
 * (run directory) goes regardless, or a restarted daemon would take the stop for
 * a crash; without either file it finds the VM stopped, which it is.
 */
export async function recordExit(
  vm: { paths: VmPaths; log: Logger; recordState(write: () => Promise<void>): Promise<boolean> },
  exit: LastExit,
): Promise<void> {
  if (!(await vm.recordState(() => writeLastExit(vm.paths, exit)))) {
    await removeLastExit(vm.paths).catch((err: unknown) => vm.log.error({ err }, "cannot remove the previous last exit"));
  }
  await removeRuntimeRecord(vm.paths).catch((err: unknown) => vm.log.error({ err }, "cannot remove the runtime record"));
}
