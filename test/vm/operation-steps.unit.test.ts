// runSteps: steps run in order, each journaled once done (unless it changes
// nothing outside the daemon); on a failure the steps already done are undone
// newest first, an undo that fails does not stop the others, and the caller
// gets the step's own error. The journal is the real one, in a temp dir.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import t, { type Test } from "tap";
import { OperationJournal } from "../../src/store/operation-journal.js";
import { runSteps, type Step } from "../../src/vm/operation-steps.js";

interface Ctx {
  trail: string[];
}

async function setup(t: Test) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-steps-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const journal = new OperationJournal(path.join(dir, "journal.json"));
  await journal.begin("web-1", { kind: "start" });
  const lines: { level: number; msg: string; step?: string }[] = [];
  const log = pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  return { journal, log, lines, ctx: { trail: [] } as Ctx };
}

/** A step that records its run and undo in the context's trail. */
function step(name: string, opts: { fails?: boolean; undo?: "ok" | "fails" | "none"; journaled?: boolean } = {}): Step<Ctx> {
  const s: Step<Ctx> = {
    name,
    run: async (ctx) => {
      ctx.trail.push(`run ${name}`);
      if (opts.fails) throw new Error(`${name} failed`);
    },
  };
  if (opts.journaled !== undefined) s.journaled = opts.journaled;
  if (opts.undo !== "none") {
    s.undo = async (ctx) => {
      ctx.trail.push(`undo ${name}`);
      if (opts.undo === "fails") throw new Error(`undo of ${name} failed`);
    };
  }
  return s;
}

t.test("all steps run in order; the journal holds each journaled one", async (t) => {
  const { journal, log, ctx } = await setup(t);
  const seenOnDisk: string[][] = [];
  const peek: Step<Ctx> = {
    name: "peek",
    journaled: false,
    // What a daemon restarted at this instant would read.
    run: async () => void seenOnDisk.push((await journal.readInterrupted())?.done ?? []),
  };
  await runSteps([step("intent"), step("argv", { journaled: false }), step("spawn"), peek, step("cont")], ctx, journal, log);
  t.same(ctx.trail, ["run intent", "run argv", "run spawn", "run cont"], "in order, nothing undone");
  t.same(journal.current?.done, ["intent", "spawn", "cont"], "a step marked journaled: false leaves no record");
  t.same((await journal.readInterrupted())?.done, ["intent", "spawn", "cont"], "and the file says the same");
  t.same(seenOnDisk, [["intent", "spawn"]], "a step is on disk before the next one begins");
});

t.test("a failed step: the steps done are undone newest first, the error goes on", async (t) => {
  const { journal, log, ctx } = await setup(t);
  const steps = [step("a"), step("b", { undo: "none" }), step("c", { journaled: false }), step("d", { fails: true }), step("e")];
  await t.rejects(runSteps(steps, ctx, journal, log), { message: "d failed" }, "the caller gets the failing step's error");
  t.same(ctx.trail, ["run a", "run b", "run c", "run d", "undo c", "undo a"], "d's own undo is not called, e never runs, b has no undo");
  t.same(journal.current?.done, ["a", "b"], "the journal still shows what was done (its end is the caller's business)");
});

t.test("the first step failing undoes nothing", async (t) => {
  const { journal, log, ctx } = await setup(t);
  await t.rejects(runSteps([step("a", { fails: true }), step("b")], ctx, journal, log), { message: "a failed" });
  t.same(ctx.trail, ["run a"]);
  t.same(journal.current?.done, []);
});

t.test("an undo that fails is logged, and the other undos still run", async (t) => {
  const { journal, log, lines, ctx } = await setup(t);
  const steps = [step("a"), step("b", { undo: "fails" }), step("c"), step("d", { fails: true })];
  await t.rejects(runSteps(steps, ctx, journal, log), { message: "d failed" }, "the step's error, not the undo's");
  t.same(ctx.trail, ["run a", "run b", "run c", "run d", "undo c", "undo b", "undo a"]);
  const errors = lines.filter((l) => l.level >= 50);
  t.same(errors.map((l) => [l.msg, l.step]), [["undo failed", "b"]], "one error logged, naming the step whose undo failed");
  t.ok(lines.some((l) => l.level === 40 && l.step === "d"), "the failing step is logged as a warning");
});

// As it stands: the write comes after the step's try, so the step it records is
// not undone by the runner; the operation's own error handling sees the error.
t.test("a journal write that fails ends the run with the write's error", async (t) => {
  const { log, ctx } = await setup(t);
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-steps-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const journal = new OperationJournal(path.join(dir, "journal.json"));
  await journal.begin("web-1", { kind: "start" });
  // The state disk vanishes: the next write of the journal fails.
  await rm(dir, { recursive: true, force: true });
  await t.rejects(runSteps([step("a"), step("b")], ctx, journal, log), { code: "ENOENT" }, "the write's error reaches the caller");
  t.same(ctx.trail, ["run a"], "the step ran, then its record failed: nothing after it ran, and the runner undid nothing");
});
