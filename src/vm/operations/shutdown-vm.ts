// Graceful shutdown: ACPI power button, then wait for the guest to power itself
// off. A guest that does not within timeoutSec is stopped hard, and the exit
// reason says so. A hard stop asked for meanwhile cuts the wait short; a daemon
// exit leaves the wait (and the journal entry) for the next daemon to carry on.
import { ShuttingDown, VmStateConflict } from "../../errors.js";
import type { Vm } from "../vm.js";
import { killQemu } from "./stop-vm.js";

export const DEFAULT_SHUTDOWN_TIMEOUT_SEC = 60;
/**
 * qemu drops a power-button press the guest has not yet enabled ACPI events for
 * (early boot, just after a reset), so the press is repeated until the deadline.
 */
const REPRESS_EVERY_MS = 5_000;

export async function shutdownVm(vm: Vm, timeoutSec: number, preempted: AbortSignal, daemonStopping: AbortSignal): Promise<void> {
  const session = vm.session;
  if (!session) throw new VmStateConflict(vm.name, vm.settledState(), "shut down");
  await vm.journal.begin(vm.name, "shutdown", { timeoutSec });
  const stopped = vm.waitStopped();
  await session.execute("system_powerdown");

  const gaveUp = AbortSignal.any([AbortSignal.timeout(timeoutSec * 1000), preempted, daemonStopping]);
  const repress = setInterval(() => {
    session.execute("system_powerdown").catch(() => {});
  }, REPRESS_EVERY_MS);
  try {
    await Promise.race([stopped, new Promise<void>((r) => gaveUp.addEventListener("abort", () => r(), { once: true }))]);
  } finally {
    clearInterval(repress);
  }
  if (vm.session === session) {
    if (daemonStopping.aborted && !preempted.aborted) {
      throw new ShuttingDown(`shutdown of "${vm.name}" will be carried on by the daemon's next start`);
    }
    const why = preempted.aborted ? "a hard stop was requested" : `the guest did not power off within ${timeoutSec}s`;
    vm.log.warn(`shutdown: ${why}; stopping qemu`);
    await killQemu(vm, preempted.aborted ? "host-stop" : "shutdown-timeout");
  }
  await vm.journal.end();
}
