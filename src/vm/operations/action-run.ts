// What perform hands the handler of an action it runs under the VM's lock: the
// lock's preemption signal, and the action's journal entry, written under the
// rule of the action being performed (src/vm/action-journal.ts). A handler never
// takes the lock or writes an entry of its own.
import type { ActionOf, VmActionKind } from "../../definition/vm-action.js";
import type { JournalFacts } from "../../store/operation-journal.js";
import { journaled, type JournaledKind, type JournaledVm } from "../action-journal.js";

export interface ActionRun {
  /** Aborted when another operation preempts this one (a stop cutting a shutdown short). */
  readonly preempted: AbortSignal;
  /**
   * Runs `body` under the journal rule of the action being performed. The entry
   * holds `recorded`, the same action as its handler settled it (a NIC named by
   * its MAC, a shutdown with its timeout), and `facts`. `begun` settles once the
   * entry is written.
   */
  journaled(recorded: ActionOf<JournaledKind>, body: (begun: Promise<void>) => Promise<void>, facts?: JournalFacts): Promise<void>;
}

export function actionRun(vm: JournaledVm, performed: { kind: VmActionKind }, preempted: AbortSignal): ActionRun {
  return {
    preempted,
    journaled: async (recorded, body, facts) => {
      if (recorded.kind !== performed.kind) throw new Error(`a ${performed.kind} cannot be journaled as a ${recorded.kind}`);
      await journaled(vm, recorded, body, facts);
    },
  };
}
