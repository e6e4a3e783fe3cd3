// The adoption pool: never more than its bound at once, every item run exactly
// once in order of start, a failing item stopping no other, and a slot held by a
// slow item not holding up the rest.
import t from "tap";
import { runBounded } from "../../src/vm/adoption-pool.js";

/** A step the test releases by hand. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

t.test("at most `parallel` at once, each item once, started in order", async (t) => {
  let active = 0;
  let peak = 0;
  const started: number[] = [];
  const items = Array.from({ length: 50 }, (_, i) => i);
  await runBounded(items, 4, async (i) => {
    started.push(i);
    active++;
    peak = Math.max(peak, active);
    await new Promise((r) => setTimeout(r, (i * 7) % 5));
    active--;
  });
  t.equal(peak, 4, "the bound is reached and never passed");
  t.same(started, items, "every item, once, in order");
});

t.test("a failing item stops nothing", async (t) => {
  const done: number[] = [];
  await runBounded([1, 2, 3, 4], 2, async (i) => {
    if (i === 2) throw new Error("boom");
    done.push(i);
  });
  t.same(done.sort(), [1, 3, 4]);
});

t.test("a stuck item holds one slot: the others all run past it", async (t) => {
  const stuck = gate();
  const done: string[] = [];
  const all = runBounded(["hung", "a", "b", "c", "d"], 2, async (name) => {
    if (name === "hung") await stuck.wait;
    done.push(name);
  });
  for (let i = 0; i < 20 && done.length < 4; i++) await new Promise((r) => setImmediate(r));
  t.same(done, ["a", "b", "c", "d"], "every other item ran while one waits");
  stuck.open();
  await all;
  t.same(done, ["a", "b", "c", "d", "hung"]);
});

t.test("fewer items than slots, none, and a bad bound", async (t) => {
  let n = 0;
  await runBounded([1], 16, async () => void n++);
  t.equal(n, 1);
  await runBounded([], 16, async () => void n++);
  t.equal(n, 1);
  await t.rejects(runBounded([1], 0, async () => {}), RangeError);
});
