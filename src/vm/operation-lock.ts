// One operation at a time per VM. A second operation does not queue behind the
// first: it is refused at once with VMH_ERR_VM_BUSY (409), so a client never
// waits blind. The one exception is a hard stop, which may cut short a graceful
// shutdown in progress: the shutdown is told to give up waiting for the guest and
// the stop then waits for it to finish.
import { VmBusy } from "../errors.js";
import type { VmActionKind } from "../definition/vm-action.js";

export interface RunningOperation {
  name: VmActionKind;
  startedAt: string;
  /** Aborted when another operation preempts this one. */
  preempt: AbortController;
  done: Promise<unknown>;
}

const preemptable: Partial<Record<VmActionKind, VmActionKind[]>> = {
  // A stop does not wait for an export's copy (its handler cancels it).
  stop: ["shutdown", "export-disk"],
};

/** Told when an operation begins and ends (not when it is refused), e.g. to publish it as events. */
export interface OperationObserver {
  started(name: VmActionKind): void;
  ended(name: VmActionKind, error: unknown): void;
}

export class OperationLock {
  private running: RunningOperation | undefined;

  constructor(
    private readonly vm: string,
    private readonly observer?: OperationObserver,
  ) {}

  get current(): RunningOperation | undefined {
    return this.running;
  }

  async run<T>(name: VmActionKind, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const held = this.running;
    if (held) {
      if (!preemptable[name]?.includes(held.name)) throw new VmBusy(this.vm, held.name);
      held.preempt.abort();
      await held.done.catch(() => {});
      if (this.running) throw new VmBusy(this.vm, this.running.name);
    }
    const preempt = new AbortController();
    const done = fn(preempt.signal);
    const op: RunningOperation = { name, startedAt: new Date().toISOString(), preempt, done };
    this.running = op;
    this.observer?.started(name);
    let error: unknown;
    try {
      return await done;
    } catch (err) {
      error = err ?? new Error("operation failed");
      throw err;
    } finally {
      if (this.running === op) this.running = undefined;
      this.observer?.ended(name, error);
    }
  }
}
