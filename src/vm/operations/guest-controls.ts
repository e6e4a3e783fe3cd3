// The one-command operations: pause, resume and reset. Each checks the state
// qemu is in first, so a pause of a paused VM is a 409, not a silent no-op.
import { VmStateConflict } from "../../errors.js";
import type { Vm } from "../vm.js";

export async function pauseVm(vm: Vm): Promise<void> {
  const s = vm.settledState();
  if (!vm.session || s !== "running") throw new VmStateConflict(vm.name, s, "pause");
  await vm.session.execute("stop");
  await vm.session.refreshStatus();
}

export async function resumeVm(vm: Vm): Promise<void> {
  const s = vm.settledState();
  if (!vm.session || s !== "paused") throw new VmStateConflict(vm.name, s, "resume");
  await vm.session.execute("cont");
  await vm.session.refreshStatus();
}

export async function resetVm(vm: Vm): Promise<void> {
  const s = vm.settledState();
  if (!vm.session || (s !== "running" && s !== "paused")) throw new VmStateConflict(vm.name, s, "reset");
  await vm.session.execute("system_reset");
}
