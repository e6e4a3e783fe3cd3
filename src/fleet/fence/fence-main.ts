#!/usr/bin/env node
// The fence process: a small Node program of its own, started detached by the
// daemon in fleet mode, so that a frozen or killed daemon cannot keep `ha`
// guests alive past their lease. It reads the shared state file every 100 ms and
// at once whenever the daemon rewrites it (inotify), decides (fence-decision.ts)
// on the boottime clock, SIGKILLs the ha qemus the lease no longer covers, pets
// the watchdog while it may, and says what it protects in status.json. It needs
// nothing from the daemon's event loop.
import { appendFileSync, existsSync, readFileSync, renameSync, rmSync, watch, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { boottimeCeilNs } from "../boottime.js";
import { matchIdentity, observeProcess } from "../../qemu/qemu-identity.js";
import { findQemuProcesses, readProcStartTicks, readProcState } from "../../qemu/qemu-process.js";
import { decideFence, leaseTrust, type VisibleQemu } from "./fence-decision.js";
import { FenceWatchdog } from "./fence-watchdog.js";
import {
  FENCE_PROTOCOL,
  FENCED_FILE,
  STATE_FILE,
  STATUS_FILE,
  VM_FENCED_FILE,
  type FenceMode,
  type FenceState,
  type FenceStatus,
  type FencedRecord,
} from "./fence-state.js";

const POLL_MS = 100;
/** status.json is rewritten at least this often, so the daemon can tell a live fence from a frozen one. */
const HEARTBEAT_MS = 1_000;
const dirIndex = process.argv.indexOf("--dir");
const dir = dirIndex > 0 ? process.argv[dirIndex + 1] : undefined;
if (!dir) {
  process.stderr.write("usage: fence-main.js --dir <run-dir>/fence --protocol N\n");
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

/** A courtesy write (status, records): atomic where it replaces, dropped if the disk refuses. */
function writeQuietly(file: string, content: string): void {
  try {
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, content, { mode: 0o600 });
    renameSync(tmp, file);
  } catch {
    // the kill is what matters
  }
}

function readState(): { state: FenceState | undefined; raw: string } {
  try {
    const raw = readFileSync(path.join(dir!, STATE_FILE), "utf8");
    return { state: JSON.parse(raw) as FenceState, raw };
  } catch {
    return { state: undefined, raw: "" };
  }
}

const watchdog = new FenceWatchdog(log);
/** Checked when the state changes: which running ha VMs' qemus are confirmed, which are hidden. */
let checked = { raw: "", protects: [] as string[], refusals: [] as { what: string; why: string }[] };

/** Confirms each running ha VM's qemu by its recorded identity (pid, start time, executable, uuid). */
async function checkVisibility(state: FenceState): Promise<typeof checked> {
  const protects: string[] = [];
  const refusals: { what: string; why: string }[] = [];
  for (const vm of state.ha) {
    if (!vm.qemu) continue;
    const seen = await observeProcess(vm.qemu.pid);
    const m = matchIdentity(vm.qemu, seen);
    if (m.kind === "match") {
      // Seeing it is not enough: it must also be ours to kill.
      try {
        process.kill(vm.qemu.pid, 0);
        protects.push(vm.name);
      } catch (err) {
        refusals.push({ what: `vm ${vm.name}`, why: `cannot signal pid ${vm.qemu.pid}: ${(err as NodeJS.ErrnoException).code}` });
      }
    } else if (m.kind === "unconfirmed") refusals.push({ what: `vm ${vm.name}`, why: m.why });
  }
  if (state.watchdog && watchdog.error) refusals.push({ what: "watchdog", why: watchdog.error });
  return { raw: "", protects, refusals };
}

/**
 * The ha qemus visible now: the recorded ones still alive as recorded and, when
 * `scan`, any process below this run directory carrying an ha VM's uuid (a qemu
 * started since the state was written, or a wrapper about to exec one).
 */
async function visibleQemus(state: FenceState, scan: boolean): Promise<VisibleQemu[]> {
  const found = new Map<number, VisibleQemu>();
  await Promise.all(
    state.ha.map(async (vm) => {
      if (!vm.qemu) return;
      const [ticks, st] = await Promise.all([readProcStartTicks(vm.qemu.pid), readProcState(vm.qemu.pid)]);
      if (ticks === vm.qemu.startTicks && st !== "Z" && st !== "X") found.set(vm.qemu.pid, { vm: vm.name, pid: vm.qemu.pid, startTicks: ticks });
    }),
  );
  if (scan) {
    const byUuid = new Map(state.ha.map((v) => [v.uuid, v.name]));
    for (const q of await findQemuProcesses(state.runDir)) {
      const vm = q.uuid ? byUuid.get(q.uuid) : undefined;
      if (vm && !found.has(q.pid)) found.set(q.pid, { vm, pid: q.pid, startTicks: await readProcStartTicks(q.pid) });
    }
  }
  return [...found.values()];
}

/** Kills already recorded (pid:start ticks): a qemu still tearing down at the next poll is signalled again, not recorded twice. */
const recorded = new Set<string>();

function kill(state: FenceState, q: VisibleQemu, cause: string): void {
  // The pid must still be the process seen (not one that took its number since).
  void readProcStartTicks(q.pid).then((ticks) => {
    if (q.startTicks !== undefined && ticks !== q.startTicks) return;
    const id = `${q.pid}:${ticks}`;
    if (recorded.has(id)) {
      try {
        process.kill(q.pid, "SIGKILL");
      } catch {
        // gone
      }
      return;
    }
    const record: FencedRecord = { at: new Date().toISOString(), vm: q.vm, pid: q.pid, ...(q.startTicks !== undefined ? { startTicks: q.startTicks } : {}), ...(state.leaseId ? { leaseId: state.leaseId } : {}), cause };
    // Beside the VM's runtime record before the kill: the daemon may record the exit the instant qemu dies.
    const mark = path.join(state.runDir, "vms", q.vm, VM_FENCED_FILE);
    writeQuietly(mark, JSON.stringify(record) + "\n");
    try {
      process.kill(q.pid, "SIGKILL");
    } catch {
      try {
        rmSync(mark, { force: true });
      } catch {
        // a stale mark names a pid that is gone: the daemon matches pid and start time
      }
      return; // gone meanwhile
    }
    recorded.add(id);
    if (recorded.size > 1000) recorded.clear();
    log("fenced", { ...record });
    try {
      appendFileSync(path.join(dir!, FENCED_FILE), JSON.stringify(record) + "\n");
    } catch {
      // the record is a courtesy; the kill is what matters
    }
  });
}

let lastMode: FenceMode | undefined;
let lastCause: string | undefined;
let lastStatus = "";
let lastStatusAt = 0;

function report(state: FenceState | undefined, mode: FenceMode, cause: string | undefined): void {
  if (mode !== lastMode || cause !== lastCause) {
    const level = mode === "refused" || mode === "fencing" ? "error" : "info";
    const msg = { idle: "no ha VM to guard", armed: "armed: every running ha VM's qemu is confirmed", refused: "refusing to arm", fencing: "fencing the ha VMs" }[mode];
    log(msg, { level, mode, ...(cause ? { cause } : {}), leaseId: state?.leaseId });
    lastMode = mode;
    lastCause = cause;
  }
  const status: Omit<FenceStatus, "at"> = {
    pid: process.pid,
    protocol: FENCE_PROTOCOL,
    mode,
    ...(cause ? { cause } : {}),
    ...(state?.leaseId ? { leaseId: state.leaseId } : {}),
    protects: mode === "armed" || mode === "refused" ? checked.protects : [],
    refusals: checked.refusals,
    ...(state?.watchdog ? { watchdog: { device: state.watchdog.device, open: watchdog.isOpen, ...(watchdog.error ? { error: watchdog.error } : {}) } } : {}),
  };
  const content = JSON.stringify(status);
  if (content === lastStatus && Date.now() - lastStatusAt < HEARTBEAT_MS) return;
  lastStatus = content;
  lastStatusAt = Date.now();
  writeQuietly(path.join(dir!, STATUS_FILE), JSON.stringify({ ...status, at: new Date().toISOString() }) + "\n");
}

async function poll(): Promise<void> {
  // Its directory removed (the host's run directory cleared, e.g. at reboot): nothing left to guard.
  if (!existsSync(dir!)) {
    log("fence directory gone: exiting", { dir });
    watchdog.close();
    process.exit(0);
  }
  const { state, raw } = readState();
  watchdog.use(state?.watchdog?.device);
  if (state && raw !== checked.raw) checked = { ...(await checkVisibility(state)), raw };
  const now = boottimeCeilNs();
  const scan = state !== undefined && state.ha.length > 0 && (!leaseTrust(state, now).trusted || state.lost !== undefined);
  const visible = state ? await visibleQemus(state, scan) : [];
  const d = decideFence(state, now, visible, checked.refusals, POLL_MS);
  for (const q of d.kill) kill(state!, q, d.cause ?? "fence");
  if (d.pet) watchdog.pet();
  report(state, d.mode, d.cause);
}

let polling = false;
let again = false;
function kick(): void {
  if (polling) {
    again = true;
    return;
  }
  polling = true;
  poll()
    .catch((err: unknown) => log("poll failed", { err: (err as Error).message, level: "error" }))
    .finally(() => {
      polling = false;
      if (again) {
        again = false;
        kick();
      }
    });
}

log("fence process started", { dir, protocol: FENCE_PROTOCOL });
setInterval(kick, POLL_MS);
// A "fence now" written by the daemon is acted on at once, not at the next poll.
try {
  watch(dir, (_event, name) => {
    if (name === STATE_FILE) kick();
  });
} catch (err) {
  log("cannot watch the state file; polling only", { err: (err as Error).message });
}
kick();
process.on("SIGTERM", () => {
  log("fence process stopping");
  watchdog.close();
  process.exit(0);
});
