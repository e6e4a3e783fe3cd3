// The destination's outcome record: what it encodes and refuses, which outcome
// may follow which (a final outcome never changes), and which records pruning
// removes (never a `prepared` one; acknowledged ones first).
import t from "tap";
import {
  decodeRecord,
  encodeRecord,
  mayFollow,
  migrationOutcomes,
  recordsToPrune,
  type OutcomeRecord,
} from "../../src/migration/outcome-record.js";

const rec = (id: number, outcome: OutcomeRecord["outcome"], at: number, acknowledgedAt?: number): OutcomeRecord => ({
  id: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}`,
  vm: "vm1",
  uuid: "11111111-1111-4111-8111-111111111111",
  outcome,
  at: new Date(at).toISOString(),
  ...(acknowledgedAt !== undefined ? { acknowledgedAt: new Date(acknowledgedAt).toISOString() } : {}),
});

t.test("a record survives its codec unchanged, and nothing else is read as one", async (t) => {
  for (const outcome of migrationOutcomes) {
    const r = rec(1, outcome, 0, outcome === "prepared" ? undefined : 5);
    t.same(decodeRecord(encodeRecord(r)), r, outcome);
  }
  const good = JSON.parse(encodeRecord(rec(1, "committed", 0))) as Record<string, unknown>;
  const bad: [string, unknown][] = [
    ["an unknown outcome", { ...good, outcome: "running" }],
    ["an id that is not a uuid (it names a file)", { ...good, id: "../../etc/passwd" }],
    ["an unknown field", { ...good, extra: 1 }],
    ["no vm", { ...good, vm: undefined }],
    ["a time that is not a time", { ...good, at: "yesterday" }],
  ];
  for (const [what, v] of bad) t.throws(() => decodeRecord(JSON.stringify(v)), what);
  t.throws(() => decodeRecord('{"id": "00000000-0000-4000-8000-0000'), "a torn file");
  t.throws(() => encodeRecord({ ...rec(1, "aborted", 0), outcome: "maybe" as "aborted" }), "encoding checks too");
});

t.test("prepared may become either final outcome; a final one never changes", async (t) => {
  t.ok(mayFollow(undefined, "prepared"));
  t.ok(mayFollow(undefined, "aborted"), "an abort before the record was made");
  t.ok(mayFollow("prepared", "committed"));
  t.ok(mayFollow("prepared", "aborted"));
  t.ok(mayFollow("committed", "committed"), "written again by a recovery: same outcome");
  t.notOk(mayFollow("committed", "aborted"), "a committed guest is never reported aborted");
  t.notOk(mayFollow("aborted", "committed"), "an aborted migration never becomes committed");
  t.notOk(mayFollow("committed", "prepared"));
});

t.test("pruning", async (t) => {
  const rule = { keepAcknowledgedMs: 1000, keepUnacknowledgedMs: 10_000, maxFinal: 3 };
  const now = 100_000;
  t.same(recordsToPrune([rec(1, "prepared", 0)], now, rule), [], "a prepared record is never pruned, however old");
  t.same(recordsToPrune([rec(1, "committed", now - 5000)], now, rule), [], "an unacknowledged one stays its time");
  t.same(recordsToPrune([rec(1, "committed", now - 20_000)], now, rule), [rec(1, "committed", 0).id], "then goes");
  t.same(recordsToPrune([rec(1, "aborted", now - 5000, now - 500)], now, rule), [], "acknowledged: kept a while");
  t.same(recordsToPrune([rec(1, "aborted", now - 5000, now - 2000)], now, rule), [rec(1, "aborted", 0).id], "then goes");
  // Five final records, the cap three: the acknowledged go first, then the oldest.
  const many = [rec(1, "committed", now - 50), rec(2, "aborted", now - 40, now - 10), rec(3, "committed", now - 30), rec(4, "aborted", now - 20), rec(5, "committed", now - 10), rec(6, "prepared", 0)];
  t.same(recordsToPrune(many, now, rule).sort(), [rec(2, "aborted", 0).id, rec(1, "committed", 0).id].sort(), "over the cap: acknowledged, then oldest");
});
