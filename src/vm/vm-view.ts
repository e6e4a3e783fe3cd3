// What a VM shows of itself: the view the API answers with and the events carry,
// rendered from the VM's facts. Kept apart from the Vm class so that readers of a
// view (routes, the CLI's types, ownership) need nothing of the live VM.
// A cloud-init user-data often holds secrets (passwords, keys): a view never
// carries it; GET /v1/vms/{name}?include=cloud-init puts the definition's back.
import type { JobView } from "../jobs/job-registry.js";
import type { LastExit } from "../store/runtime-store.js";
import type { CloudInit, VmDefinition } from "../definition/vm-definition.js";
import type { VmLimits } from "../limits/limits-schema.js";
import type { Ownership } from "../fleet/fleet-member.js";
import type { VmActionKind } from "../definition/vm-action.js";
import type { QemuSession } from "./qemu-session.js";
import type { VmState } from "./vm-state.js";
import type { OutcomeUnknown } from "./migration-outcome.js";

export interface VmView {
  name: string;
  uuid: string;
  state: VmState;
  pid?: number;
  qemuStatus?: string;
  unresponsive?: boolean;
  startedAt?: string;
  qemuVersion?: string;
  argv?: string[];
  /** The second QMP monitor, for qemu's own tools. */
  qmpDebugSocket?: string;
  /** The uid this VM's qemu runs as (0: root). */
  qemuUid?: number;
  operation?: ViewOperation;
  job?: JobView;
  lastExit?: LastExit;
  /** Devices the guest was asked to release and has not yet (qemu ids: `disk-<name>`, `nic<N>`). */
  removalPending?: string[];
  /** The memory balloon as qemu last reported it, while qemu runs. */
  balloon?: { actualMiB: number };
  /** The limits the running VM holds, read back from its cgroup, qemu and its taps (refresh). */
  limits?: VmLimits;
  /** Why the VM is in state `error`. */
  error?: string;
  stateWriteError?: string;
  /** Fleet mode: the host holding the VM's owner key, and the key's revision (the fencing token). */
  owner?: Ownership;
  definition: VmDefinitionView;
}

/** A definition as shown: the cloud-init seed without its user-data unless asked for. */
export type VmDefinitionView = Omit<VmDefinition, "cloudInit"> & { cloudInit?: Omit<CloudInit, "userData"> & { userData?: string } };

/** The definition without the seed's user-data. */
export function withoutUserData(def: VmDefinition): VmDefinitionView {
  if (!def.cloudInit) return def;
  const { userData: _secret, ...rest } = def.cloudInit;
  return { ...def, cloudInit: rest };
}

/**
 * The operation holding the VM's lock. A migration out whose outcome is unknown
 * says so: stage `migrating-out`, reason `outcome-unknown`, since when and to where.
 */
export interface ViewOperation {
  name: VmActionKind;
  startedAt: string;
  stage?: "migrating-out";
  reason?: "outcome-unknown";
  since?: string;
  destination?: string;
  migration?: string;
}

/** The facts of a VM a view is rendered from. */
export interface ViewFacts {
  definition: VmDefinition;
  state: VmState;
  session: QemuSession | undefined;
  qmpDebugSocket: string;
  /** The guest's memory as the balloon last reported it, in bytes. */
  balloonBytes: number | undefined;
  appliedLimits: VmLimits | undefined;
  removalPending: string[];
  operation: { name: VmActionKind; startedAt: string } | undefined;
  outcomeUnknown: OutcomeUnknown | undefined;
  job: JobView | undefined;
  lastExit: LastExit | undefined;
  broken: string | undefined;
  stateWriteError: string | undefined;
  owner: Ownership | undefined;
}

export function renderView(f: ViewFacts): VmView {
  const s = f.session;
  return {
    name: f.definition.name,
    uuid: f.definition.uuid,
    state: f.state,
    ...(s
      ? {
          pid: s.pid,
          qemuStatus: s.status,
          unresponsive: s.unresponsive,
          startedAt: s.record.startedAt,
          // The version this qemu was started from: after a package upgrade it may differ from the host's.
          ...(s.record.qemuVersion ? { qemuVersion: s.record.qemuVersion } : {}),
          argv: [...s.record.argv],
          qmpDebugSocket: f.qmpDebugSocket,
          qemuUid: s.record.uid ?? 0,
          ...(f.balloonBytes !== undefined ? { balloon: { actualMiB: Math.round(f.balloonBytes / 2 ** 20) } } : {}),
          ...(f.appliedLimits !== undefined ? { limits: f.appliedLimits } : {}),
        }
      : {}),
    ...(f.removalPending.length > 0 ? { removalPending: f.removalPending } : {}),
    ...(f.operation ? { operation: viewOperation(f.operation, f.outcomeUnknown) } : {}),
    ...(f.job ? { job: f.job } : {}),
    ...(f.lastExit ? { lastExit: f.lastExit } : {}),
    ...(f.broken ? { error: f.broken } : {}),
    ...(f.stateWriteError ? { stateWriteError: f.stateWriteError } : {}),
    ...(f.owner ? { owner: f.owner } : {}),
    definition: withoutUserData(f.definition),
  };
}

function viewOperation(op: { name: VmActionKind; startedAt: string }, unknown: OutcomeUnknown | undefined): ViewOperation {
  const base = { name: op.name, startedAt: op.startedAt };
  if (op.name !== "migrate" || !unknown) return base;
  return {
    ...base,
    stage: "migrating-out",
    reason: "outcome-unknown",
    since: unknown.since,
    destination: unknown.destination,
    ...(unknown.migration ? { migration: unknown.migration } : {}),
  };
}
