// The short fuzz run of `npm test` (the full one is `npm run fuzz`): malformed
// requests to every endpoint, never a 5xx, the daemon alive and its state as it was.
import t from "tap";
import { formatFigures, runFuzz } from "./http-fuzz.js";

const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);

t.test(`HTTP fuzz: ${RUNS} malformed requests`, async (t) => {
  const { figures, failure, stateUnchanged, samePid } = await runFuzz(RUNS, process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined);
  t.comment(formatFigures(figures));
  t.notOk(failure, failure ?? "no failing request");
  t.equal(figures.fiveHundreds, 0, "no 5xx");
  t.ok(figures.requests >= RUNS, `${figures.requests} requests sent`);
  t.ok(samePid, "the same daemon process answers afterwards");
  t.ok(stateUnchanged, "the state directory is byte-identical");
});
