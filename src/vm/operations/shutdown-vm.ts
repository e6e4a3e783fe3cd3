// Graceful shutdown: ACPI power button, then wait for the guest to power itself
// off. A guest that does not within timeoutSec is stopped hard, and the exit
// reason says so. A hard stop asked for meanwhile cuts the wait short.
import { VmStateConflict } from "../../errors.js";
import type { Vm } from "../vm.js";
import { killQemu } from "./stop-vm.js";

export const DEFAULT_SHUTDOWN_TIMEOUT_SEC = 60;

export async function shutdownVm(vm: Vm, timeoutSec: number, preempted: AbortSignal): Promise<void> {
  const session = vm.session;
  if (!session) throw new VmStateConflict(vm.name, vm.settledState(), "shut down");
  await vm.journal.begin(vm.name, "shutdown", { timeoutSec });
  const stopped = vm.waitStopped();
  await session.execute("system_powerdown");
  await vm.journal.stepDone("powerdown-sent");

  const timeout = AbortSignal.timeout(timeoutSec * 1000);
  const gaveUp = AbortSignal.any([timeout, preempted]);
  await Promise.race([stopped, new Promise<void>((r) => gaveUp.addEventListener("abort", () => r(), { once: true }))]);
  if (vm.session === session) {
    const why = preempted.aborted ? "a hard stop was requested" : `the guest did not power off within ${timeoutSec}s`;
    vm.log.warn(`shutdown: ${why}; stopping qemu`);
    await killQemu(vm, preempted.aborted ? "host-stop" : "shutdown-timeout");
  }
  await vm.journal.end();
}
