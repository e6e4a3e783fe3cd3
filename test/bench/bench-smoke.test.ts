// Benches that cannot rot: every bench (each file under bench/ that runs through
// BenchRun) is run once in its smoke mode, so a change that breaks a bench —
// a route it calls, a flag it passes, the argv it replays by hand — fails here
// rather than the next time someone wants figures. Each run is bounded in time
// and must exit 0 with its table on stdout.
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { distRoot } from "../helpers/dist-root.js";

const benchDir = path.join(distRoot, "bench");
/** Per bench; the migration smoke boots four qemus under TCG on a loaded machine. */
const BENCH_TIMEOUT_MS = 150_000;

/** What each bench must print on stdout in smoke mode: a line of its table. */
const expected: Record<string, RegExp> = {
  "start-latency.js": /^raw qemu: same argv, QMP cont\s+1\s/m,
  "start-up.js": /^vmctl list, bundle, no daemon\s+1\s/m,
  "readoption.js": /^spawn daemon -> all VMs paused via API\s+1\s/m,
  "scale.js": /^GET \/metrics \(new connection\)\s+1\s/m,
  // Both sides migrated: each measured, or its migration completed and qemu 7.2 under TCG then
  // broke the guest (README, Live migration: by hand as through vmhostd). A case that stopped,
  // or a migration that failed, fails here.
  "migration.js": new RegExp(
    ["vmhostd: POST migrate -> job ended", "by hand: spawn dest -> dest cont"]
      .map((row, i) => {
        const side = ["vmhostd", "by hand"][i]!;
        return `(?=[\\s\\S]*(^256 MiB idle\\s+${row}\\s+1\\s|256 MiB idle, ${side}: 1 of 1 runs did not complete: guest broken: the migration completed))`;
      })
      .join(""),
    "m",
  ),
  "api-tls.js": /^mTLS, new connection\s+5\s/m,
  // The bench itself fails when the incremental backup was full or not much smaller than the full one.
  "backup.js": /^\| incremental \| [\d.]+ \| [\d.]+ \|$/m,
  "api-tails.js": /^this build: GET \/metrics, new connection\s+5\s/m,
};

async function benchEntries(): Promise<string[]> {
  const files = (await readdir(benchDir)).filter((f) => f.endsWith(".js")).sort();
  const entries: string[] = [];
  for (const f of files) if ((await readFile(path.join(benchDir, f), "utf8")).includes("new BenchRun(")) entries.push(f);
  return entries;
}

function runBench(file: string): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [path.join(benchDir, file), "--smoke"], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    // SIGTERM first: the bench's own handler then stops its daemons and qemus.
    const term = setTimeout(() => child.kill("SIGTERM"), BENCH_TIMEOUT_MS);
    const kill = setTimeout(() => child.kill("SIGKILL"), BENCH_TIMEOUT_MS + 20_000);
    child.once("close", (code) => {
      clearTimeout(term);
      clearTimeout(kill);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

const entries = await benchEntries();
// Two at a time: the file stays well inside tap's per-file timeout on a loaded machine
// (each bench starts its own daemons in directories of its own, so they do not meet).
t.jobs = 2;

t.test("every bench has a smoke expectation here", async (t) => {
  t.same(entries, Object.keys(expected).sort(), "a new bench runs through BenchRun and gets a line in `expected`");
});

for (const file of entries) {
  t.test(`${file} --smoke`, { timeout: BENCH_TIMEOUT_MS + 30_000 }, async (t) => {
    const r = await runBench(file);
    t.comment(`${file} --smoke: ${(r.ms / 1000).toFixed(1)} s`);
    t.equal(r.code, 0, `exit 0; stderr:\n${r.stderr.slice(-3000)}`);
    t.match(r.stdout, expected[file] ?? /./, "its table is printed");
    t.notMatch(r.stderr, /clean-up failed/, "nothing left behind that could not be removed");
  });
}
