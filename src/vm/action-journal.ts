// The one place an action's journal entry is written and removed. Each action
// kind declares as data whether it is journaled, how its entry is written and
// what a failure leaves (the table below; a new action must say), and the action
// runs inside `journaled`, which applies that rule. The entry holds the action
// itself, so a daemon that restarts mid-action reads back what to finish or undo.
import type { ActionOf, VmActionKind } from "../definition/vm-action.js";
import type { JournalFacts } from "../store/operation-journal.js";
import type { Vm } from "./vm.js";

export interface JournalRule {
  /**
   * "before": written before the action acts; an entry that cannot be written refuses the action.
   * "alongside": written while the action's first checks run; it awaits `begun` before it acts (a start).
   * "best-effort": an action that must not fail for want of its entry (stop, a shutdown, whose hard
   * stop frees a full disk's guest): without one, a daemon killed mid-action finds the guest as it was.
   */
  begin: "before" | "alongside" | "best-effort";
  /** A failed action's entry: kept for the next daemon's recovery, or ended (nothing was left to finish). */
  onFailure: "keep" | "end";
  /**
   * After the action succeeded: "end" (a failure to remove the entry fails the action; for a best-effort
   * entry it is noted on the VM instead, as its writing was), "end-logged" (the
   * change is made; a restarted daemon only makes it again), or "outcome": the operation's own outcome ends
   * it later with endEntry (a migration's commit or roll-back, both sides).
   */
  onSuccess: "end" | "end-logged" | "outcome";
}

const deviceRule: JournalRule = { begin: "before", onFailure: "end", onSuccess: "end-logged" };
const hardStopRule: JournalRule = { begin: "best-effort", onFailure: "keep", onSuccess: "end" };
// A failed snapshot operation cleans up after itself; a killed one is settled from the entry (src/vm/snapshots/).
const snapshotRule: JournalRule = { begin: "before", onFailure: "end", onSuccess: "end" };
const migrationRule: JournalRule = { begin: "before", onFailure: "keep", onSuccess: "outcome" };

/** Every action kind's rule; "none" for one that changes nothing a restart must finish or undo. */
export const journalRules = {
  create: "none",
  delete: "none",
  start: { begin: "alongside", onFailure: "end", onSuccess: "end" },
  shutdown: hardStopRule,
  stop: hardStopRule,
  reset: "none",
  pause: "none",
  resume: "none",
  "change-cdrom": deviceRule,
  "eject-cdrom": deviceRule,
  "resize-disk": deviceRule,
  "add-disk": deviceRule,
  "remove-disk": deviceRule,
  "add-nic": deviceRule,
  "remove-nic": deviceRule,
  // The rules change in one transaction; a daemon that died before recording the definition
  // re-installs the recorded one's rules at adoption.
  "set-nic-filter": "none",
  "set-balloon": "none",
  "set-cloud-init": "none",
  // Applied, then recorded: a restart in between re-applies the definition at adoption, old or new.
  "set-limits": "none",
  backup: "none",
  "snapshot-create": snapshotRule,
  "snapshot-revert": snapshotRule,
  "snapshot-delete": snapshotRule,
  // A daemon killed mid-export finds the entry and tears down what the export had made (backups/disk-export.ts).
  "export-disk": { begin: "before", onFailure: "end", onSuccess: "end" },
  // Its server stopped and its files removed: a restart's lazy clean-up ends an export whose server is gone.
  "unexport-disk": "none",
  migrate: migrationRule,
  "migrate-in": migrationRule,
  // Carried out by the waiting migration, under its lock and its journal entry.
  "resolve-migration": "none",
  takeover: "none",
  qmp: "none",
  adopt: "none",
  "release-owner": "none",
} as const satisfies Record<VmActionKind, JournalRule | "none">;

/** What of a VM its journal entry needs. */
export type JournaledVm = Pick<Vm, "name" | "journal" | "log" | "recordState">;

export type JournaledKind = { [K in VmActionKind]: (typeof journalRules)[K] extends "none" ? never : K }[VmActionKind];

/**
 * Runs `body` as `action` under its journal rule. `begun` settles once the entry
 * is written (an action written "alongside" awaits it before it acts; it rejects
 * if the entry could not be written).
 */
export async function journaled(
  vm: JournaledVm,
  action: ActionOf<JournaledKind>,
  body: (begun: Promise<void>) => Promise<void>,
  facts?: JournalFacts,
): Promise<void> {
  const rule: JournalRule = journalRules[action.kind];
  const write = async () => {
    await vm.journal.begin(vm.name, action, facts);
  };
  // A best-effort entry that could not be written is noted on the VM (its state shows it), and the action goes on.
  const written = rule.begin === "best-effort" ? Promise.resolve(await vm.recordState(write)) : write().then(() => true);
  const begun = written.then(() => undefined);
  begun.catch(() => {});
  if (rule.begin === "before") await begun;
  try {
    await body(begun);
  } catch (err) {
    if (rule.onFailure === "end") await written.then(() => endQuietly(vm)).catch(() => {});
    throw err;
  }
  if (!(await written)) return;
  if (rule.onSuccess === "end") {
    if (rule.begin === "best-effort") await vm.recordState(() => vm.journal.end());
    else await vm.journal.end();
  } else if (rule.onSuccess === "end-logged") await endQuietly(vm);
}

async function endQuietly(vm: JournaledVm): Promise<void> {
  await vm.journal.end().catch((err: unknown) => vm.log.error({ err }, "cannot end the journal entry"));
}

/**
 * Ends the entry of an operation whose outcome decides it (a migration committed,
 * rolled back or resumed here) or that recovery after a restart has finished.
 * "strict" throws if the entry cannot be removed; "recorded" notes that on the VM
 * (its state shows it); "quiet" drops it.
 */
export async function endEntry(vm: JournaledVm, how: "strict" | "recorded" | "quiet"): Promise<void> {
  if (how === "strict") await vm.journal.end();
  else if (how === "recorded") await vm.recordState(() => vm.journal.end());
  else await vm.journal.end().catch(() => {});
}
