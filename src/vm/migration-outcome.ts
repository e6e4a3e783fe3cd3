// A VM whose migration out has sent all its RAM but whose outcome the source
// does not know (the destination unreachable, restarting, or without a record):
// the guest stays paused here, the view says so (state `paused`, operation
// `migrate` at stage `migrating-out`, reason `outcome-unknown`), nothing may
// `cont` it behind the migration's back, and an operator may decide with an
// explicit outcome (`resolve-migration`), which the waiting migration carries out.
import { MigrationOutcomeUnknown, VmStateConflict } from "../errors.js";
import type { VmAction } from "../definition/vm-action.js";

export interface OutcomeUnknown {
  /** When the source began to wait. */
  since: string;
  destination: string;
  /** The migration's id (absent for one journaled before ids existed). */
  migration?: string;
}

export type OperatorOutcome = "committed" | "aborted";

interface OperatorRequest {
  outcome: OperatorOutcome;
  done(err?: unknown): void;
}

export class MigrationOutcome {
  private current: OutcomeUnknown | undefined;
  private request: OperatorRequest | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly changed: () => void) {}

  /** While set, the outcome of the VM's migration out is unknown. */
  get unknown(): OutcomeUnknown | undefined {
    return this.current;
  }

  enter(info: OutcomeUnknown): void {
    this.current = info;
    this.changed();
  }

  leave(): void {
    this.current = undefined;
    // An operator's request left unanswered: the migration settled by itself meanwhile.
    this.request?.done();
    this.request = undefined;
    this.changed();
  }

  /** The waiting migration: the operator's request, if one comes within `ms`. */
  async nextRequest(ms: number): Promise<OperatorRequest | undefined> {
    if (!this.request) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    const r = this.request;
    this.request = undefined;
    return r;
  }

  /** The operator: hands the outcome to the waiting migration; settles once it has acted on it (or refused). */
  resolve(vm: string, outcome: OperatorOutcome): Promise<void> {
    if (!this.current) throw new VmStateConflict(vm, "not waiting for a migration's outcome", "resolve the migration of");
    if (this.request) throw new VmStateConflict(vm, "being resolved", "resolve the migration of");
    return new Promise<void>((resolve, reject) => {
      this.request = { outcome, done: (err) => (err === undefined ? resolve() : reject(err)) };
      this.wake?.();
    });
  }
}

/** Refuses what would run the paused copy while the outcome is unknown: the API's resume and a pass-through `cont`. */
export function refuseWhileOutcomeUnknown(vm: { name: string; migrationOutcome: MigrationOutcome }, action: VmAction): void {
  if (!vm.migrationOutcome.unknown) return;
  if (action.kind === "resume" || (action.kind === "qmp" && action.command === "cont")) {
    throw new MigrationOutcomeUnknown(vm.name, action.kind === "qmp" ? "cont" : "resume");
  }
}
