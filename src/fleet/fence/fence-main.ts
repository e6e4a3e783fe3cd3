#!/usr/bin/env node
// The fence process: a small Node program of its own, started detached by the
// daemon in fleet mode, so that a frozen or killed daemon cannot keep `ha`
// guests alive past their lease. Every 100 ms it reads the shared state file;
// once the last confirmed lease renewal is older than the TTL minus the margin,
// it SIGKILLs every qemu of this host whose VM is `ha`, and goes on doing so on
// every poll until a fresher renewal is written. It needs nothing from the
// daemon's event loop.
import { appendFileSync, existsSync, readFileSync, writeSync } from "node:fs";
import path from "node:path";
import { findQemuProcesses } from "../../qemu/qemu-process.js";
import { FENCED_FILE, STATE_FILE, fenceDeadlineNs, type FenceState } from "./fence-state.js";

const POLL_MS = 100;
const dirIndex = process.argv.indexOf("--dir");
const dir = dirIndex > 0 ? process.argv[dirIndex + 1] : undefined;
if (!dir) {
  process.stderr.write("usage: fence-main.js --dir <run-dir>/fence\n");
  process.exit(2);
}

/**
 * stdout is a file (fence.log). process.stdout on a file whose disk is full emits
 * an 'error' nobody can catch in time, and the fence process would die of a log
 * line; so lines are written to fd 1 directly, and one that fails is dropped.
 */
function log(msg: string, fields: Record<string, unknown> = {}): void {
  try {
    writeSync(1, JSON.stringify({ time: Date.now(), component: "fence", pid: process.pid, msg, ...fields }) + "\n");
  } catch {
    // disk full or stdout gone: the kill is what matters
  }
}

function readState(): FenceState | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir!, STATE_FILE), "utf8")) as FenceState;
  } catch {
    return undefined;
  }
}

/** This host's qemus (started below its run directory) of the `ha` VMs, by uuid. */
async function haQemus(state: FenceState): Promise<{ pid: number; vm: string }[]> {
  const byUuid = new Map(state.ha.map((v) => [v.uuid, v.name]));
  const all = await findQemuProcesses(state.runDir);
  return all.flatMap((q) => {
    const vm = q.uuid ? byUuid.get(q.uuid) : undefined;
    return vm ? [{ pid: q.pid, vm }] : [];
  });
}

let armed = false;
let polling = false;
async function poll(): Promise<void> {
  // Its directory removed (the host's run directory cleared, e.g. at reboot): nothing left to guard.
  if (!existsSync(dir!)) {
    log("fence directory gone: exiting", { dir });
    process.exit(0);
  }
  const state = readState();
  if (!state || state.ha.length === 0) return;
  const late = process.hrtime.bigint() - fenceDeadlineNs(state);
  if (late < 0n) {
    if (armed) log("lease renewed again: fencing stops", { leaseId: state.leaseId });
    armed = false;
    return;
  }
  if (!armed) log("lease not renewed in time: fencing the ha VMs", { leaseId: state.leaseId, lateMs: Number(late / 1_000_000n) });
  armed = true;
  for (const q of await haQemus(state)) {
    try {
      process.kill(q.pid, "SIGKILL");
    } catch {
      continue; // gone meanwhile
    }
    const record = { at: new Date().toISOString(), vm: q.vm, pid: q.pid, leaseId: state.leaseId, lateMs: Number(late / 1_000_000n) };
    log("fenced", record);
    try {
      appendFileSync(path.join(dir!, FENCED_FILE), JSON.stringify(record) + "\n");
    } catch {
      // the record is a courtesy; the kill is what matters
    }
  }
}

log("fence process started", { dir });
setInterval(() => {
  if (polling) return;
  polling = true;
  poll().finally(() => (polling = false));
}, POLL_MS);
process.on("SIGTERM", () => {
  log("fence process stopping");
  process.exit(0);
});
