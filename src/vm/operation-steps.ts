// An operation is a list of named steps, each with an optional undo. The runner
// journals each step once it is done; when a step fails, the steps already done
// are undone in reverse order and the error goes on to the caller.
import type { Logger } from "pino";
import type { OperationJournal } from "../store/operation-journal.js";

export interface Step<C> {
  name: string;
  /**
   * Whether finishing this step is written to the journal. Steps that change
   * nothing outside the daemon (checks, computing argv) need no record: after a
   * crash they are simply done again. Default true.
   */
  journaled?: boolean;
  run: (ctx: C) => Promise<void>;
  undo?: (ctx: C) => Promise<void>;
}

export async function runSteps<C>(steps: Step<C>[], ctx: C, journal: OperationJournal, log: Logger): Promise<void> {
  const done: Step<C>[] = [];
  for (const step of steps) {
    const started = performance.now();
    try {
      await step.run(ctx);
      log.debug({ step: step.name, ms: Math.round((performance.now() - started) * 10) / 10 }, "step done");
    } catch (err) {
      log.warn({ step: step.name, err }, "step failed; undoing the steps already done");
      for (const prev of done.reverse()) {
        try {
          await prev.undo?.(ctx);
        } catch (undoErr) {
          log.error({ step: prev.name, err: undoErr }, "undo failed");
        }
      }
      throw err;
    }
    done.push(step);
    if (step.journaled !== false) await journal.stepDone(step.name);
  }
}
