// The states a VM is reported in, and how they follow from the truth: the
// operation in flight, whether a qemu process is alive, and what qemu says.
import type { LastExit } from "../store/runtime-store.js";
import type { VmActionKind } from "../definition/vm-action.js";

export const vmStates = [
  "stopped",
  "starting",
  "running",
  "paused",
  "shutting-down",
  "crashed",
  /** A qemu is alive but the daemon cannot (yet) tell what it is doing: adoption under way or no monitor. */
  "unknown",
  /** Being sent to another host, or received from one. */
  "migrating",
  /** The daemon cannot read what it needs for this VM (a corrupt definition); the operator decides. */
  "error",
] as const;
export type VmState = (typeof vmStates)[number];

export interface StateFacts {
  /** The action holding the VM's lock, if one does. */
  operation?: VmActionKind;
  /** Why the VM cannot be managed normally, if it cannot. */
  broken?: string;
  qemuAlive: boolean;
  /** qemu's RunState from query-status or its events, when a qemu is alive and has been heard from. */
  qemuStatus?: string;
  lastExit?: LastExit;
  /** A migration out sent all its RAM and does not know its outcome: the guest is held paused here. */
  outcomeUnknown?: boolean;
}

export function deriveState(f: StateFacts): VmState {
  if (f.broken) return "error";
  if (f.operation === "adopt") return "unknown";
  if (f.operation === "migrate" && f.outcomeUnknown) return "paused";
  if (f.operation === "migrate" || f.operation === "migrate-in") return "migrating";
  if (!f.qemuAlive) {
    if (f.operation === "start") return "starting";
    return f.lastExit?.reason === "crashed" ? "crashed" : "stopped";
  }
  if (f.operation === "start") return "starting";
  if (f.operation === "shutdown" || f.operation === "stop") return "shutting-down";
  switch (f.qemuStatus) {
    case undefined:
      return "unknown";
    case "running":
      return "running";
    case "shutdown":
      return "shutting-down";
    case "internal-error":
    case "guest-panicked":
      return "crashed";
    default:
      // prelaunch, paused, suspended, io-error, watchdog, ...: the guest is not executing.
      return "paused";
  }
}
