// When a view may trust what it last read of qemu and the host: only after a
// complete read with no event since; an event during a read leaves it stale.
import t from "tap";
import { FactFreshness } from "../../src/vm/fact-freshness.js";

t.test("stale until a read completes, fresh until the next event", async (t) => {
  const f = new FactFreshness();
  t.notOk(f.fresh, "never read: stale");
  f.settled(f.begin());
  t.ok(f.fresh, "read with nothing since: fresh");
  f.changed();
  t.notOk(f.fresh, "an event since the read: stale");
  f.settled(f.begin());
  t.ok(f.fresh);
});

t.test("an event while a read is under way leaves its answer stale", async (t) => {
  const f = new FactFreshness();
  const token = f.begin();
  f.changed(); // qemu sent STOP while we waited for query-status
  f.settled(token);
  t.notOk(f.fresh, "the answer may be from before the event");
  f.settled(f.begin());
  t.ok(f.fresh, "a read begun after it is trusted");
});

t.test("a read that did not complete changes nothing", async (t) => {
  const f = new FactFreshness();
  f.settled(f.begin());
  f.changed();
  f.begin(); // qemu did not answer: settled is never called
  t.notOk(f.fresh);
});
