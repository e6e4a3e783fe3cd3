// The graceful-shutdown wait must end at its deadline even when the daemon's
// heap is collected meanwhile (the daemon runs with a small young generation, so
// collections are frequent). A timeout signal that only AbortSignal.any() depends
// on can be collected in node 20 and never fire; this wait uses a plain timer.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import t from "tap";
import { untilDeadlineOrAbort } from "../../../src/vm/operations/shutdown-vm.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

t.test("the deadline fires after a garbage collection", async (t) => {
  const never = new AbortController();
  const cancel = new AbortController();
  const started = Date.now();
  const waits = Array.from({ length: 10 }, () => untilDeadlineOrAbort(200, [never.signal], cancel.signal));
  setTimeout(gc, 20);
  const outcome = await Promise.race([Promise.all(waits).then(() => "deadline"), new Promise((r) => setTimeout(() => r("stuck"), 3000).unref())]);
  t.equal(outcome, "deadline", "every wait ended");
  t.ok(Date.now() - started >= 190, "not before the deadline");
});

t.test("an abort ends the wait early; cancel drops the timer", async (t) => {
  const preempt = new AbortController();
  const cancel = new AbortController();
  const started = Date.now();
  const wait = untilDeadlineOrAbort(60_000, [preempt.signal], cancel.signal);
  setTimeout(() => preempt.abort(), 30);
  await wait;
  cancel.abort();
  t.ok(Date.now() - started < 5_000, "ended by the abort");
  const already = new AbortController();
  already.abort();
  const c2 = new AbortController();
  await untilDeadlineOrAbort(60_000, [already.signal], c2.signal);
  c2.abort();
  t.pass("a signal aborted beforehand ends it at once");
});
