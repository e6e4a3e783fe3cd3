// The actions that run as a job: a disk backup and a migration out. Each side
// checks the request and makes what the job needs (prepare), answering at once
// with the job; the work then goes on in the background. The VM shows the job
// while it runs. A migration holds the VM's lock in its name throughout; a
// backup holds none (it may run for hours, and the VM can still be stopped,
// which ends it as failed).
import { assertNever, type ActionOf } from "../../definition/vm-action.js";
import type { Job } from "../../jobs/job-registry.js";
import type { Vm } from "../vm.js";
import type { ActionRun } from "./action-run.js";

/** A job whose request was accepted: its work, and what is done if the work fails. */
export interface PreparedJob {
  job: Job;
  /** The work; `run` carries the action's journal entry (a migration's is written before it acts). */
  run(run: ActionRun): Promise<void>;
  /** Records the failure on the job (and cleans up) before the VM stops showing it. */
  failed(err: unknown): Promise<void> | void;
}

/** Where the work of each job action lives (set by main: the migration side imports the registry). */
export interface JobActions {
  backup(vm: Vm, action: ActionOf<"backup">): Promise<PreparedJob>;
  migrate(vm: Vm, action: ActionOf<"migrate">): Promise<PreparedJob>;
  deleteSnapshot(vm: Vm, action: ActionOf<"snapshot-delete">): Promise<PreparedJob>;
}

export type JobAction = ActionOf<"backup" | "migrate" | "snapshot-delete">;

/** Runs a job's work, under the VM's lock for a job that holds it (perform decides). */
export type JobHold = (work: (run: ActionRun) => Promise<void>) => Promise<void>;

export async function performJobAction(handlers: JobActions, vm: Vm, action: JobAction, hold: JobHold): Promise<Job> {
  switch (action.kind) {
    case "backup":
      return launch(vm, await handlers.backup(vm, action), hold);
    case "migrate":
      return launch(vm, await handlers.migrate(vm, action), hold);
    case "snapshot-delete":
      return launch(vm, await handlers.deleteSnapshot(vm, action), hold);
    default:
      assertNever(action);
  }
}

function launch(vm: Vm, prepared: PreparedJob, hold: JobHold): Job {
  const { job } = prepared;
  vm.showJob(job);
  void hold((run) => prepared.run(run))
    .catch((err: unknown) => prepared.failed(err))
    .finally(() => {
      vm.jobEnded(job);
    });
  return job;
}
