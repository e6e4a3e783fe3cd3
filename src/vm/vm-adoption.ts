// Adoption after a daemon (re)start: the view of each VM is rebuilt from disk
// and from qemu, never from memory. A live qemu is re-attached (the same process,
// checked by pid + start time); one that ended while the daemon was away is
// recorded as such; a start that never completed is undone, so that a VM can
// never end up with two qemu processes.
import { readFile, rm } from "node:fs/promises";
import { isSameProcess, readProcCmdline, readProcStartTicks, signalProcess } from "../qemu/qemu-process.js";
import { waitForProcessGone } from "../qemu/qemu-launcher.js";
import { readLastExit, readRuntimeRecord, removeRuntimeRecord, writeLastExit } from "../store/runtime-store.js";
import type { HostContext } from "./host-context.js";
import { QemuSession } from "./qemu-session.js";
import type { Vm } from "./vm.js";

const ADOPT_CONNECT_MS = 3_000;

export async function adoptVm(vm: Vm, host: HostContext): Promise<void> {
  try {
    vm.lastExit = await readLastExit(vm.paths);
    const interrupted = await vm.journal.readInterrupted();
    if (interrupted?.operation === "start") {
      vm.log.warn({ done: interrupted.done }, "a start was interrupted by a daemon restart; undoing it");
      await killUnfinishedStart(vm);
      await vm.journal.end();
      return;
    }
    await attachLiveQemu(vm, host);
    if (interrupted) {
      vm.log.info({ operation: interrupted.operation, done: interrupted.done }, "an operation was interrupted by a daemon restart");
      await vm.journal.end();
    }
  } catch (err) {
    vm.log.error({ err }, "adoption failed");
  }
}

async function attachLiveQemu(vm: Vm, host: HostContext): Promise<void> {
  const record = await readRuntimeRecord(vm.paths);
  if (!record) return;
  if (!(await isSameProcess(record.pid, record.procStartTicks))) {
    vm.lastExit = {
      at: new Date().toISOString(),
      reason: "crashed",
      exitCode: null,
      signal: null,
      detail: "qemu ended while the daemon was not running; its exit status is unknown",
    };
    vm.log.warn("qemu ended while the daemon was down");
    await writeLastExit(vm.paths, vm.lastExit);
    await cleanRunFiles(vm);
    return;
  }
  const session = new QemuSession(vm.name, record, vm.paths.qmpSocket, vm.log);
  vm.attachSession(session);
  try {
    await session.connect(ADOPT_CONNECT_MS);
    await session.refreshStatus(ADOPT_CONNECT_MS);
    vm.log.info({ pid: record.pid, status: session.status }, "adopted running qemu");
  } catch (err) {
    // The guest is left alone: an unreachable monitor is the daemon's problem, not a reason to kill it.
    session.unresponsive = true;
    vm.log.error({ err, pid: record.pid }, "adopted qemu does not answer QMP; will keep trying");
    session.reconnectInBackground();
  }
}

/** The qemu of a start that never completed: found by runtime record or pidfile, checked by uuid, killed. */
async function killUnfinishedStart(vm: Vm): Promise<void> {
  const record = await readRuntimeRecord(vm.paths).catch(() => undefined);
  let pid = record?.pid;
  if (!pid) pid = Number((await readFile(vm.paths.pidfile, "utf8").catch(() => "")).trim()) || undefined;
  if (pid) {
    const cmdline = await readProcCmdline(pid);
    const ticks = await readProcStartTicks(pid);
    if (cmdline?.includes(vm.definition.uuid) && ticks !== undefined) {
      await signalProcess(pid, ticks, "SIGKILL");
      await waitForProcessGone(pid, ticks, AbortSignal.timeout(10_000), 50);
    }
  }
  await cleanRunFiles(vm);
}

async function cleanRunFiles(vm: Vm): Promise<void> {
  await removeRuntimeRecord(vm.paths).catch(() => {});
  for (const f of [vm.paths.pidfile, vm.paths.qmpSocket, vm.paths.consoleSocket]) await rm(f, { force: true });
}
