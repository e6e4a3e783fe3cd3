// The evacuation's dealings with the VMs: which of those with a qemu here can be
// live-migrated (and why not), and moving one through the registry's own
// `migrate` action, following its job to the end.
import { setTimeout as sleep } from "node:timers/promises";
import { VmNotFound, VmhError } from "../../errors.js";
import type { Job } from "../../jobs/job-registry.js";
import { devicesChangedSinceStart } from "../../vm/devices/device-hotplug.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import type { Vm } from "../../vm/vm.js";
import type { EvacuationItem, VmToPlace } from "./evacuation-plan.js";

/** How long a VM busy with another operation (the recovery of a cut-short migration, say) is waited for. */
const BUSY_WAIT_MS = 120_000;
const POLL_MS = 200;

export interface Moves {
  registry: VmRegistry;
  storage: "shared" | "copy";
  bandwidthMiBps?: number;
}

/** How a VM's line ends. */
export type MoveOutcome = Pick<EvacuationItem, "state" | "reason">;

/** The VMs with a qemu here, each with why it cannot move if it cannot. */
export function vmsToPlace(registry: VmRegistry, storage: Moves["storage"]): VmToPlace[] {
  return registry
    .list()
    .filter((vm) => vm.session)
    .map((vm) => {
      const unmovable = whyUnmovable(vm, storage);
      return { name: vm.name, memoryMiB: vm.definition.memoryMiB, ...(unmovable ? { unmovable } : {}) };
    });
}

function whyUnmovable(vm: Vm, storage: Moves["storage"]): string | undefined {
  const state = vm.settledState();
  if (state !== "running") return `${state}: only a running guest is live-migrated (resume or stop it)`;
  // The destination's qemu is built from the definition.
  if (devicesChangedSinceStart(vm)) return "devices hot-plugged since its start: its qemu differs from its definition (restart it first)";
  const own = vm.definition.disks.find((d) => !d.image);
  if (storage === "shared" && own) return `disk ${own.name} lives in the VM's own directory, not on shared storage (evacuate with storage copy)`;
  return undefined;
}

/**
 * Moves one VM: waits (bounded) for an operation on it to end, then performs its
 * `migrate` action and follows that job. `interrupted`: its migration was cut
 * short by a restart, so a VM gone from here was moved by the recovery.
 */
export async function moveVm(
  m: Moves,
  item: EvacuationItem,
  interrupted: boolean,
  signal: AbortSignal,
  started: (job: string) => Promise<void>,
): Promise<MoveOutcome> {
  const deadline = Date.now() + BUSY_WAIT_MS;
  let vm: Vm;
  for (;;) {
    try {
      vm = m.registry.get(item.vm);
    } catch (err) {
      if (!(err instanceof VmNotFound)) throw err;
      return interrupted ? { state: "done" } : { state: "skipped", reason: "no longer on this host" };
    }
    if (!vm.lock.current || Date.now() >= deadline || signal.aborted) break;
    await sleep(POLL_MS);
  }
  if (!vm.session) return { state: "skipped", reason: `no longer running (${vm.settledState()})` };
  try {
    const migration = await m.registry.perform(item.vm, {
      kind: "migrate",
      destination: item.url!,
      storage: m.storage,
      ...(m.bandwidthMiBps ? { bandwidthMiBps: m.bandwidthMiBps } : {}),
    });
    await started(migration.id);
    await followToEnd(migration, signal);
    if (migration.state === "succeeded") return { state: "done" };
    return { state: "failed", reason: `migration ${migration.state}: ${migration.error?.detail ?? "no reason given"}` };
  } catch (err) {
    const e = err as Error;
    return { state: "failed", reason: err instanceof VmhError ? `${e.message} (${err.code})` : e.message };
  }
}

/** Waits for a VM's migration job to end; cancelling the evacuation cancels it. */
async function followToEnd(migration: Job, signal: AbortSignal): Promise<void> {
  let asked = false;
  while (migration.state === "running") {
    if (signal.aborted && !asked) {
      asked = true;
      try {
        migration.cancel();
      } catch {
        // it ended meanwhile
      }
    }
    await sleep(POLL_MS);
  }
}
