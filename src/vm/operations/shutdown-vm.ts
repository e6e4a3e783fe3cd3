// Graceful shutdown: ACPI power button, then wait for the guest to power itself
// off. A guest that does not within timeoutSec is stopped hard, and the exit
// reason says so. A hard stop asked for meanwhile cuts the wait short; a daemon
// exit leaves the wait (and the journal entry) for the next daemon to carry on.
// Like stop, it never fails because the state disk is full: the journal is best effort.
import { ShuttingDown, VmStateConflict } from "../../errors.js";
import type { Vm } from "../vm.js";
import type { QemuSession } from "../qemu-session.js";
import { killQemu } from "./stop-vm.js";
import type { ActionRun } from "./action-run.js";

export const DEFAULT_SHUTDOWN_TIMEOUT_SEC = 60;
/**
 * qemu drops a power-button press the guest has not yet enabled ACPI events for
 * (early boot, just after a reset), so the press is repeated until the deadline.
 */
const REPRESS_EVERY_MS = 5_000;

export async function shutdownVm(vm: Vm, timeoutSec: number, run: ActionRun, daemonStopping: AbortSignal): Promise<void> {
  const session = vm.session;
  if (!session) throw new VmStateConflict(vm.name, vm.settledState(), "shut down");
  // Journaled best effort; a daemon exit mid-wait keeps the entry for the next daemon (action-journal.ts).
  await run.journaled({ kind: "shutdown", timeoutSec }, () => powerOff(vm, session, timeoutSec, run.preempted, daemonStopping));
}

async function powerOff(vm: Vm, session: QemuSession, timeoutSec: number, preempted: AbortSignal, daemonStopping: AbortSignal): Promise<void> {
  const stopped = vm.waitStopped();
  await session.execute("system_powerdown");

  const repress = setInterval(() => {
    session.execute("system_powerdown").catch(() => {});
  }, REPRESS_EVERY_MS);
  const gaveUp = new AbortController();
  try {
    await Promise.race([stopped, untilDeadlineOrAbort(timeoutSec * 1000, [preempted, daemonStopping], gaveUp.signal)]);
  } finally {
    clearInterval(repress);
    gaveUp.abort();
  }
  if (vm.session === session) {
    if (daemonStopping.aborted && !preempted.aborted) {
      throw new ShuttingDown(`shutdown of "${vm.name}" will be carried on by the daemon's next start`);
    }
    const why = preempted.aborted ? "a hard stop was requested" : `the guest did not power off within ${timeoutSec}s`;
    vm.log.warn(`shutdown: ${why}; stopping qemu`);
    await killQemu(vm, preempted.aborted ? "host-stop" : "shutdown-timeout");
  }
}

/**
 * Resolves after `ms` or once any of `signals` aborts, whichever is first; `cancel`
 * drops the timer and listeners. A plain timer rather than AbortSignal.any() over
 * AbortSignal.timeout(): node 20 may garbage-collect a timeout signal that only a
 * composite signal depends on, and then the wait never ends.
 */
export function untilDeadlineOrAbort(ms: number, signals: AbortSignal[], cancel: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    cancel.addEventListener("abort", () => clearTimeout(timer), { once: true });
    for (const s of signals) {
      if (s.aborted) resolve();
      else s.addEventListener("abort", () => resolve(), { once: true, signal: cancel });
    }
  });
}
