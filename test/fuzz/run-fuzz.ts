// `npm run fuzz`: the full run (FUZZ_RUNS, default 10,000; FUZZ_SEED to replay)
// with its figures on stdout. Exits 1 on any failure.
import { formatFigures, runFuzz } from "./http-fuzz.js";

const runs = Number(process.env.FUZZ_RUNS ?? 10_000);
const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
const result = await runFuzz(runs, seed, (s) => process.stderr.write(`${s}\n`));
console.log(formatFigures(result.figures));
console.log(`daemon alive, same process: ${result.samePid}; state directory unchanged: ${result.stateUnchanged}`);
if (result.failure) console.log(`FAILED: ${result.failure}`);
process.exit(result.failure || !result.samePid || !result.stateUnchanged || result.figures.fiveHundreds > 0 ? 1 : 0);
