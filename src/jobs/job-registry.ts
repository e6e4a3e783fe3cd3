// Long-running work (a migration, a backup) as jobs: an id to watch, a phase and
// progress that are updated as the work goes on, a result or an error at the end,
// and a cancel that reaches the work through an AbortSignal. Finished jobs are kept
// for a while so a client that polls late still sees how it ended.
import { randomUUID } from "node:crypto";
import { JobNotFound, VmStateConflict } from "../errors.js";
import type { EventBus } from "../events/event-bus.js";
import { countJobFinished } from "../metrics/metric-hooks.js";

export type JobState = "running" | "succeeded" | "failed" | "cancelled";

export interface JobView {
  id: string;
  kind: string;
  vm: string;
  state: JobState;
  phase: string;
  progress: Record<string, number | string | null>;
  startedAt: string;
  endedAt?: string;
  result?: Record<string, unknown>;
  error?: { code: string; detail: string };
  /** A job that works through several things (an evacuation: one per VM): each one's state. */
  items?: Record<string, unknown>[];
}

export class Job {
  readonly startedAt = new Date().toISOString();
  state: JobState = "running";
  phase = "starting";
  progress: Record<string, number | string | null> = {};
  endedAt: string | undefined;
  result: Record<string, unknown> | undefined;
  error: { code: string; detail: string } | undefined;
  items: Record<string, unknown>[] | undefined;
  private readonly aborter = new AbortController();

  /** `vm` is empty for a job of the host (an evacuation), which reports through its own host events. */
  constructor(
    readonly kind: string,
    readonly vm: string,
    private readonly bus: EventBus,
    readonly id: string = randomUUID(),
  ) {}

  /** Aborted when an operator cancels the job. */
  get signal(): AbortSignal {
    return this.aborter.signal;
  }

  cancel(): void {
    if (this.state !== "running") throw new VmStateConflict(this.vm, `job ${this.state}`, "cancel the job");
    this.aborter.abort();
  }

  setPhase(phase: string): void {
    this.phase = phase;
    if (this.vm) this.bus.publish("job.progress", this.vm, { job: this.id, kind: this.kind, phase, progress: this.progress });
  }

  update(progress: Record<string, number | string | null>): void {
    this.progress = { ...this.progress, ...progress };
  }

  finish(state: Exclude<JobState, "running">, result?: Record<string, unknown>, error?: { code: string; detail: string }): void {
    this.state = state;
    this.endedAt = new Date().toISOString();
    this.result = result;
    this.error = error;
    countJobFinished(this.kind, state);
    if (this.vm) this.bus.publish("job.ended", this.vm, { job: this.id, kind: this.kind, state, result, error });
  }

  view(): JobView {
    return {
      id: this.id,
      kind: this.kind,
      vm: this.vm,
      state: this.state,
      phase: this.phase,
      progress: this.progress,
      startedAt: this.startedAt,
      ...(this.endedAt ? { endedAt: this.endedAt } : {}),
      ...(this.result ? { result: this.result } : {}),
      ...(this.error ? { error: this.error } : {}),
      ...(this.items ? { items: this.items } : {}),
    };
  }
}

/** How many finished jobs are remembered. */
const KEEP_FINISHED = 256;

export class JobRegistry {
  private readonly jobs = new Map<string, Job>();

  constructor(private readonly bus: EventBus) {}

  /** `id`: a job carried on after a restart keeps the id it had. */
  create(kind: string, vm: string, id?: string): Job {
    const job = new Job(kind, vm, this.bus, id);
    this.jobs.set(job.id, job);
    this.trim();
    return job;
  }

  get(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new JobNotFound(id);
    return job;
  }

  list(): Job[] {
    return [...this.jobs.values()];
  }

  /** The running job of a VM, if any. */
  runningFor(vm: string): Job | undefined {
    return this.list().find((j) => j.vm === vm && j.state === "running");
  }

  private trim(): void {
    const finished = this.list().filter((j) => j.state !== "running");
    for (const j of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.jobs.delete(j.id);
  }
}
