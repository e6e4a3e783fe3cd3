// The run-state actions: start, shutdown, stop, reset, pause and resume (perform
// runs each under the VM's lock in its own name). A start is admitted against the host's
// memory and (fleet mode) runs only with the owner key held; a VM that no longer
// runs after a shutdown or stop gives its key back.
import { assertNever, type ActionOf } from "../../definition/vm-action.js";
import type { Vm } from "../vm.js";
import type { ActionContext } from "./action-context.js";
import type { ActionRun } from "./action-run.js";
import { pauseVm, resetVm, resumeVm } from "./guest-controls.js";
import { DEFAULT_SHUTDOWN_TIMEOUT_SEC, shutdownVm } from "./shutdown-vm.js";
import { startVm } from "./start-vm.js";
import { stopVm } from "./stop-vm.js";

export type LifecycleAction = ActionOf<"start" | "shutdown" | "stop" | "reset" | "pause" | "resume">;

export async function performLifecycle(c: ActionContext, vm: Vm, action: LifecycleAction, run: ActionRun): Promise<void> {
  switch (action.kind) {
    case "start":
      await withMemory(c, vm, () => c.ownership.whileOwned(vm, () => startVm(vm, c.host, run)));
      return;
    case "shutdown":
      try {
        await shutdownVm(vm, action.timeoutSec ?? DEFAULT_SHUTDOWN_TIMEOUT_SEC, run, c.host.stopping.signal);
      } finally {
        // Also for a VM already down (the guest powered off): its key goes back once nothing runs.
        await c.ownership.release(vm);
      }
      return;
    case "stop":
      try {
        await stopVm(vm, run);
      } finally {
        await c.ownership.release(vm);
      }
      return;
    case "reset":
      return await resetVm(vm);
    case "pause":
      return await pauseVm(vm);
    case "resume":
      return await resumeVm(vm);
    default:
      assertNever(action);
  }
}

/**
 * A start runs only with its memory admitted, claimed until it ends; a VM
 * already running goes straight on to be refused by the start itself.
 */
async function withMemory(c: ActionContext, vm: Vm, run: () => Promise<void>): Promise<void> {
  if (vm.session) return await run();
  const release = await c.memory.admit(vm.name, vm.definition.memoryMiB);
  try {
    await run();
  } finally {
    release();
  }
}

/**
 * What admits a start, for another way of starting a guest (a revert that
 * resumes a snapshot's memory): the host's memory claimed for the VM's whole
 * memoryMiB, then (fleet mode) the owner key held. Asked before anything
 * changes, also of a VM still running (its qemu is replaced), so a refusal
 * leaves the VM as it was, with the start's error.
 */
export async function asStart(c: ActionContext, vm: Vm, body: () => Promise<void>): Promise<void> {
  const release = await c.memory.admit(vm.name, vm.definition.memoryMiB);
  try {
    await c.ownership.whileOwned(vm, body);
  } finally {
    release();
  }
}
