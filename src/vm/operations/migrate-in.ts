// Receiving a VM another host sends (migrate in). The name and uuid are reserved
// while the VM's directory is made, the VM is registered, and the receive runs
// under the VM's lock in the `migrate-in` operation, journaled as the action
// (its commit, its abort or recovery ends the entry).
// The lock is held past the answer to the source: until the commit or the abort
// settles the receive. The migration side supplies the work (IncomingWork).
import type { ActionOf } from "../../definition/vm-action.js";
import type { VmDefinition } from "../../definition/vm-definition.js";
import type { JournalFacts } from "../../store/operation-journal.js";
import type { Vm } from "../vm.js";
import type { ActionRun } from "./action-run.js";

/** What a migration target does for one incoming VM; R is its answer to the source. */
export interface IncomingWork<R> {
  /** The definition as the source sent it: its name and uuid are reserved while the directory is made. */
  definition: Pick<VmDefinition, "name" | "uuid">;
  /** Makes the VM's directory (and its disks for a copy); resolves with the definition as it is on this host. */
  make(): Promise<VmDefinition>;
  /** What the journal entry records besides the action (the pool images made for a copy). */
  facts(vm: Vm): JournalFacts;
  /**
   * Under the lock: runs qemu -incoming, calls `answer` with the reply for the
   * source, and resolves once the commit or the abort has settled the receive.
   */
  receive(vm: Vm, answer: (reply: R) => void): Promise<void>;
  /** Removes what was made for a receive that failed before it answered (vm: registered by then). */
  undo(vm: Vm | undefined): Promise<void>;
}

/** The registry's part: reserving a name and uuid, and adding the VM once its directory exists. */
export interface IncomingNames {
  reserve(def: Pick<VmDefinition, "name" | "uuid">): () => void;
  register(def: VmDefinition): Vm;
}

/** Runs the receive under the incoming VM's operation lock (perform supplies it). */
export type IncomingHold = (vm: Vm, body: (run: ActionRun) => Promise<void>) => Promise<void>;

export async function performMigrateIn<R>(names: IncomingNames, action: ActionOf<"migrate-in">, work: IncomingWork<R>, hold: IncomingHold): Promise<R> {
  const release = names.reserve(work.definition);
  let vm: Vm | undefined;
  try {
    const def = await work.make();
    release();
    vm = names.register(def);
    return await receiveUnderLock(vm, action, work, hold);
  } catch (err) {
    release();
    await work.undo(vm);
    throw err;
  }
}

function receiveUnderLock<R>(vm: Vm, action: ActionOf<"migrate-in">, work: IncomingWork<R>, hold: IncomingHold): Promise<R> {
  return new Promise<R>((answer, refuse) => {
    void hold(vm, (run) => run.journaled(action, () => work.receive(vm, answer), work.facts(vm))).catch(refuse);
  });
}
