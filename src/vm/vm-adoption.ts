// Adoption after a daemon (re)start: the view of each VM is rebuilt from disk
// and from qemu, never from memory. A live qemu is re-attached (the same process,
// checked by pid + start time + the uuid in its command line); one that ended
// while the daemon was away is recorded as such; an operation that a crash cut
// short is finished or rolled back from its journal. Nothing here ever kills a
// guest because the daemon itself failed.
import { endEntry } from "./action-journal.js";
import { readFile, rm } from "node:fs/promises";
import { readTerminationNote } from "../qemu/qemu-log.js";
import { isSameProcess, readProcCmdline, readProcStartTicks, signalProcess } from "../qemu/qemu-process.js";
import { waitForProcessGone } from "../qemu/qemu-launcher.js";
import type { JournalEntry } from "../store/operation-journal.js";
import { readLastExit, readRuntimeRecord, removeRuntimeRecord, writeLastExit, type LastExit, type RuntimeRecord } from "../store/runtime-store.js";
import { recheckVmTaps, removeVmTaps } from "../net/tap-devices.js";
import { readExeIdentity } from "../qemu/qemu-identity.js";
import { QemuSession } from "./qemu-session.js";
import { readoptLimits, releaseLimits } from "../limits/vm-limits.js";
import { fencedDetail, takeFencedRecord } from "./vm-exit.js";
import type { Vm } from "./vm.js";

/**
 * How long adoption waits for a qemu's monitor and its status, all told: the time
 * a hung qemu holds its place in the adoption pool before it is left `unknown`
 * and retried in the background.
 */
const ADOPT_QMP_BUDGET_MS = 2_000;
/** The least a status query is given, even when connecting took most of the budget. */
const STATUS_MIN_MS = 500;
/** A qemu that has not answered in this long is slow or hung: the API need not wait for its adoption to open. */
export const QEMU_SLOW_MS = 250;

export interface AdoptionHooks {
  /** The VM's qemu lives but has not answered within QEMU_SLOW_MS (its adoption goes on). */
  qemuSlow?: () => void;
}

/**
 * Adopts the VM; resolves with the journal entry of an operation a restart cut
 * short, which VmRegistry.recover settles once the VM's lock is free again. A
 * start cut short is undone here, before anything else may act on the VM.
 */
export async function adoptVm(vm: Vm, hooks: AdoptionHooks = {}): Promise<JournalEntry | undefined> {
  vm.restoreLastExit(await readLastExit(vm.paths));
  const interrupted = await vm.journal.readInterrupted((err, raw) =>
    vm.log.error({ err, entry: raw.slice(0, 4096) }, "the journal entry of an interrupted operation cannot be read; that operation is not recovered"),
  );
  const record = await readRecordOrPidfile(vm);
  const alive = record !== undefined && (await isOurQemu(vm, record));

  if (alive) {
    await attach(vm, record, hooks);
    await recheckVmTaps(vm.definition, vm.log);
    // -action shutdown=pause: a guest that powered off while we were away waits for us to end it.
    if (vm.session?.status === "shutdown") await vm.endAfterGuestShutdown();
  }
  else if (record) await recordEndedWhileAway(vm, record);
  // No qemu of this VM lives: taps it left (its qemu ended while the daemon was down,
  // or a start was cut short before its spawn) are removed. A running VM's are its own.
  if (!alive) await removeVmTaps(vm.definition, vm.log);
  // A live qemu keeps the limits the definition gives (its cgroup found again, each
  // limit written again); a gone one's cgroup and ifb devices are removed.
  if (alive && vm.session?.connected) await readoptLimits(vm).catch((err: unknown) => vm.log.error({ err }, "cannot apply the VM's limits again"));
  if (!alive) await releaseLimits(vm).catch(() => {});
  // After the termination note was read: a qemu that logged without pause while the
  // daemon was down has filled its files past their caps. A live one's log watcher,
  // started when its session was attached, does this itself.
  if (!alive) await vm.logs.bound();

  if (!interrupted) return undefined;
  vm.log.warn({ action: interrupted.action, done: interrupted.done }, "an operation was cut short by a daemon restart");
  // A migration's entry stays until its own side has settled it.
  if (interrupted.action.kind === "migrate" || interrupted.action.kind === "migrate-in") return interrupted;
  if (interrupted.action.kind === "start") await undoHalfStart(vm);
  await endEntry(vm, "recorded");
  return interrupted;
}

/**
 * The runtime record, or when it is missing or torn, what the pidfile and /proc
 * tell (a start cut short between spawn and record leaves only the pidfile).
 */
async function readRecordOrPidfile(vm: Vm): Promise<RuntimeRecord | undefined> {
  try {
    const rec = await readRuntimeRecord(vm.paths);
    if (rec) return rec;
  } catch (err) {
    vm.log.error({ err }, "runtime record unreadable; looking for qemu by its pidfile");
  }
  const pid = Number((await readFile(vm.paths.pidfile, "utf8").catch(() => "")).trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const [cmdline, ticks] = await Promise.all([readProcCmdline(pid), readProcStartTicks(pid)]);
  if (!cmdline || ticks === undefined || !cmdline.includes(vm.definition.uuid)) return undefined;
  return {
    pid,
    procStartTicks: ticks,
    uuid: vm.definition.uuid,
    argv: cmdline,
    accel: cmdline.some((a) => a.includes("accel=kvm")) ? "kvm" : "tcg",
    startedAt: new Date().toISOString(),
  };
}

/** The same process that was launched (pid + start time) and qemu of this very VM (uuid in argv). */
async function isOurQemu(vm: Vm, rec: RuntimeRecord): Promise<boolean> {
  if (!(await isSameProcess(rec.pid, rec.procStartTicks))) return false;
  const cmdline = await readProcCmdline(rec.pid);
  return cmdline?.includes(rec.uuid) ?? false;
}

async function attach(vm: Vm, record: RuntimeRecord, hooks: AdoptionHooks): Promise<void> {
  // A record of an older daemon lacks the executable the fence recognises qemu by; the process is proven ours above.
  record.exe ??= await readExeIdentity(record.pid).catch(() => undefined);
  const session = new QemuSession(vm.name, record, vm.paths.qmpSocket, vm.log);
  vm.attachSession(session);
  const until = Date.now() + ADOPT_QMP_BUDGET_MS;
  const slow = setTimeout(() => hooks.qemuSlow?.(), QEMU_SLOW_MS);
  try {
    await session.connect(ADOPT_QMP_BUDGET_MS);
    await session.refreshStatus(Math.max(STATUS_MIN_MS, until - Date.now()));
    vm.log.info({ pid: record.pid, status: session.status }, "adopted running qemu");
  } catch (err) {
    // An unreachable monitor is the daemon's problem, not a reason to touch the guest:
    // the VM shows `unknown` until qemu answers, then is adopted the rest of the way.
    session.unresponsive = true;
    vm.log.error({ err: (err as Error).message, pid: record.pid }, "adopted qemu does not answer QMP; will keep trying");
    session.onAnswering(() => void finishLateAdoption(vm, session));
    session.reconnectInBackground();
  } finally {
    clearTimeout(slow);
  }
}

/**
 * A qemu that did not answer at adoption answers now: what adoption would have
 * done with its answer is done now, under the VM's lock like any change (a VM an
 * operation holds meanwhile is that operation's; its limits stay as they were).
 */
async function finishLateAdoption(vm: Vm, session: QemuSession): Promise<void> {
  if (vm.session !== session) return;
  if (session.status === "shutdown") {
    await vm.endAfterGuestShutdown();
    return;
  }
  await vm.lock
    .run("adopt", () => readoptLimits(vm))
    .catch((err: unknown) => vm.log.warn({ err }, "cannot apply the VM's limits again after it answered"));
}

async function recordEndedWhileAway(vm: Vm, record: RuntimeRecord): Promise<void> {
  const note = await readTerminationNote(vm.paths.qemuLog);
  const fenced = await takeFencedRecord(vm.paths.runDir, record.pid, record.procStartTicks);
  const lastExit: LastExit = {
    at: new Date().toISOString(),
    reason: fenced ? "fenced" : "crashed",
    exitCode: null,
    signal: fenced ? "SIGKILL" : null,
    detail: fenced
      ? `${fencedDetail(fenced)}, while the daemon was not running`
      : `qemu (pid ${record.pid}) ended while the daemon was not running${note ? `: ${note}` : "; its exit status is unknown"}`,
  };
  vm.restoreLastExit(lastExit);
  vm.log.warn({ lastExit }, "qemu ended while the daemon was down");
  await vm.recordState(() => writeLastExit(vm.paths, lastExit));
  if (fenced) vm.publish("vm.fenced", { pid: record.pid, detail: lastExit.detail! });
  await cleanRunFiles(vm);
}

/**
 * A start that never told qemu to run, or whose qemu does not answer, is undone
 * rather than guessed at, so a VM can never end up with a second qemu.
 */
async function undoHalfStart(vm: Vm): Promise<void> {
  const session = vm.session;
  if (!session) return;
  if (session.connected && session.status !== "prelaunch") return; // it got through cont: done
  vm.log.warn("undoing a start that never completed");
  vm.expectExit("start-failed");
  await signalProcess(session.record.pid, session.record.procStartTicks, "SIGKILL");
  await waitForProcessGone(session.record.pid, session.record.procStartTicks, AbortSignal.timeout(10_000), 50);
  await vm.waitStopped(AbortSignal.timeout(5_000));
}

export async function cleanRunFiles(vm: Vm): Promise<void> {
  await removeRuntimeRecord(vm.paths).catch(() => {});
  for (const f of [vm.paths.pidfile, vm.paths.qmpSocket, vm.paths.qmpDebugSocket, vm.paths.consoleSocket, vm.paths.vncSocket, vm.paths.qgaSocket]) await rm(f, { force: true }).catch(() => {});
}
