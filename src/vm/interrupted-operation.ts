// After a daemon restart: the operation a journal entry says was cut short is
// finished or undone, by the stored action itself: performed again where doing
// it again is safe, settled by what qemu has for a device change, handed to its
// own side for a migration. A start cut short was already undone by adoption.
import { settleInterruptedExport } from "./backups/disk-export.js";
import { assertNever, type ActionOf, type VmAction } from "../definition/vm-action.js";
import type { JournalEntry } from "../store/operation-journal.js";
import type { ActionContext } from "./operations/action-context.js";
import { recoverHotplug } from "./operations/hotplug.js";
import type { ActionRun } from "./operations/action-run.js";
import { DEFAULT_SHUTDOWN_TIMEOUT_SEC } from "./operations/shutdown-vm.js";
import type { Vm } from "./vm.js";

/** Each side's recovery of a migration a restart cut short (src/migration/). */
export interface MigrationRecovery {
  out(vm: Vm, action: ActionOf<"migrate">, entry: JournalEntry): Promise<void>;
  in(vm: Vm, entry: JournalEntry): Promise<void>;
}

type SnapshotKind = "snapshot-create" | "snapshot-revert" | "snapshot-delete";

export interface Recovery {
  context: ActionContext;
  perform(name: string, action: ActionOf<"shutdown" | "stop" | "change-cdrom" | "eject-cdrom" | "resize-disk">): Promise<unknown>;
  migration: MigrationRecovery | undefined;
  /** Settles a snapshot operation a restart cut short (src/vm/snapshots/). */
  snapshots: ((vm: Vm, entry: JournalEntry) => Promise<void>) | undefined;
  /** Runs a recovery under the VM's operation lock in the stored action's name (the registry's, as perform's). */
  underLock(vm: Vm, action: ActionOf<"add-disk" | "remove-disk" | "add-nic" | "remove-nic" | "migrate" | "migrate-in" | SnapshotKind>, body: (run: ActionRun) => Promise<void>): Promise<void>;
}

export async function recoverInterrupted(r: Recovery, vm: Vm, entry: JournalEntry): Promise<void> {
  const action: VmAction = entry.action;
  vm.log.info({ action }, "finishing the interrupted operation");
  switch (action.kind) {
    case "shutdown": {
      // The guest is given what was left of its time, and at least a second.
      if (!vm.session) return;
      const elapsed = (Date.now() - Date.parse(entry.startedAt)) / 1000;
      const timeoutSec = Math.max(1, Math.ceil((action.timeoutSec ?? DEFAULT_SHUTDOWN_TIMEOUT_SEC) - elapsed));
      await r.perform(vm.name, { kind: "shutdown", timeoutSec });
      return;
    }
    case "stop":
      if (vm.session) await r.perform(vm.name, action);
      return;
    case "add-disk":
    case "remove-disk":
    case "add-nic":
    case "remove-nic": {
      // Settled by what qemu has now (operations/hotplug.ts).
      const finish = r.context.finishRemovalLater(vm.name, removalOf(entry));
      await r.underLock(vm, action, (run) => recoverHotplug(vm, r.context.host, entry, finish, run));
      return;
    }
    case "change-cdrom":
    case "eject-cdrom":
    case "resize-disk":
      // Done again in full: the disc may or may not have changed; growing to the size asked for is a no-op if reached.
      await r.perform(vm.name, action);
      return;
    case "snapshot-create":
    case "snapshot-revert":
    case "snapshot-delete": {
      const settle = r.snapshots;
      if (settle) await r.underLock(vm, action, () => settle(vm, entry));
      return;
    }
    case "migrate": {
      const side = r.migration;
      if (side) await r.underLock(vm, action, () => side.out(vm, action, entry));
      return;
    }
    case "migrate-in": {
      const side = r.migration;
      if (side) await r.underLock(vm, action, () => side.in(vm, entry));
      return;
    }
    case "export-disk":
      await settleInterruptedExport(vm, action.disk);
      return;
    // Undone by the adoption itself.
    case "start":
    // Never journaled: nothing is left half done.
    case "create":
    case "delete":
    case "reset":
    case "pause":
    case "resume":
    case "set-balloon":
    case "set-cloud-init":
    case "set-nic-filter":
    case "set-limits":
    case "backup":
    case "unexport-disk":
    case "takeover":
    case "resolve-migration":
    case "qmp":
    case "adopt":
    case "release-owner":
      return;
    default:
      assertNever(action);
  }
}

/** The removal a device change's recovery finishes later if the guest has not yet let go. */
function removalOf({ action, facts }: JournalEntry): ActionOf<"remove-disk" | "remove-nic"> {
  if (action.kind === "add-disk") return { kind: "remove-disk", disk: action.disk.name };
  if (action.kind === "remove-disk" || action.kind === "remove-nic") return action;
  return { kind: "remove-nic", nic: facts.nic?.mac ?? (action.kind === "add-nic" ? (action.nic.mac ?? "") : "") };
}
