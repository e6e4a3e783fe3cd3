// The memory balloon of a running VM: the daemon sets a target and the guest's
// virtio_balloon driver inflates or deflates towards it in its own time; qemu's
// query-balloon (and its BALLOON_CHANGE events) tell how far it has got. A guest
// without the driver never moves, which is not an error.
import { ValidationFailed, VmStateConflict } from "../../errors.js";
import type { Vm } from "../vm.js";

const MiB = 2 ** 20;

export interface BalloonStatus {
  targetMiB: number;
  /** The guest's memory as qemu reports it now; absent when qemu cannot say (no driver yet). */
  actualMiB?: number;
}

export async function setBalloonTarget(vm: Vm, targetMiB: number): Promise<BalloonStatus> {
  const session = vm.session;
  const state = vm.settledState();
  if (!session?.connected || (state !== "running" && state !== "paused")) throw new VmStateConflict(vm.name, state, "set the balloon of");
  if (!vm.definition.balloon) throw new VmStateConflict(vm.name, `${state} without a balloon device`, "set the balloon of");
  if (targetMiB > vm.definition.memoryMiB) {
    const message = `must be at most the VM's memory, ${vm.definition.memoryMiB} MiB`;
    throw new ValidationFailed(`targetMiB: ${message}`, [{ field: "targetMiB", message }]);
  }
  await session.execute("balloon", { value: targetMiB * MiB });
  vm.publish("vm.balloon", { targetMiB });
  // The target changed what qemu reports: read it afresh rather than from before.
  vm.facts.changed();
  await vm.refresh();
  return { targetMiB, ...(vm.balloonActual !== undefined ? { actualMiB: Math.round(vm.balloonActual / MiB) } : {}) };
}
