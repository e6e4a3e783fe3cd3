// The one-command operations: pause, resume and reset. Each checks the state
// qemu is in first, so a pause of a paused VM is a 409, not a silent no-op. They
// wait for qemu only briefly: a qemu that does not answer is reported as such.

/** qemu answers these at once unless it is hung. */
const COMMAND_TIMEOUT_MS = 5_000;
import { VmStateConflict } from "../../errors.js";
import type { Vm } from "../vm.js";

export async function pauseVm(vm: Vm): Promise<void> {
  const s = vm.settledState();
  if (!vm.session || s !== "running") throw new VmStateConflict(vm.name, s, "pause");
  await vm.session.execute("stop", undefined, COMMAND_TIMEOUT_MS);
  await vm.session.refreshStatus();
}

export async function resumeVm(vm: Vm): Promise<void> {
  const s = vm.settledState();
  if (!vm.session || s !== "paused") throw new VmStateConflict(vm.name, s, "resume");
  await vm.session.execute("cont", undefined, COMMAND_TIMEOUT_MS);
  await vm.session.refreshStatus();
}

export async function resetVm(vm: Vm): Promise<void> {
  const s = vm.settledState();
  if (!vm.session || (s !== "running" && s !== "paused")) throw new VmStateConflict(vm.name, s, "reset");
  await vm.session.execute("system_reset", undefined, COMMAND_TIMEOUT_MS);
}
