// A failed bench reports its first error; a clean-up that fails afterwards is
// reported after it, never in its place (bench/readoption once printed only
// `ENOTEMPTY ... rmdir .../run` from its clean-up and hid why it had failed).
import { spawnSync } from "node:child_process";
import path from "node:path";
import t from "tap";
import { numberArg, smokeMode } from "../../bench/bench-run.js";
import { distRoot } from "../helpers/dist-root.js";

const benchRun = path.join(distRoot, "bench", "bench-run.js");

function runScript(body: string): { status: number | null; stderr: string } {
  const script = `import { BenchRun } from ${JSON.stringify(benchRun)};\nconst bench = new BenchRun("demo");\n${body}`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 20_000 });
  return { status: r.status, stderr: r.stderr };
}

t.test("the first error is reported, then the failed clean-up, and the exit is 1", async (t) => {
  const r = runScript(`
    bench.defer(async () => { throw new Error("ENOTEMPTY: cleanup-error"); });
    bench.defer(async () => { process.stderr.write("second clean-up ran\\n"); });
    await bench.run(async () => { throw new Error("first-error: daemon not ready"); });`);
  t.equal(r.status, 1);
  const first = r.stderr.indexOf("first-error: daemon not ready");
  const cleanup = r.stderr.indexOf("ENOTEMPTY: cleanup-error");
  t.ok(first >= 0, r.stderr);
  t.ok(cleanup > first, "the clean-up's error comes after the first error");
  t.match(r.stderr, /clean-up failed/);
  t.ok(r.stderr.indexOf("second clean-up ran") < cleanup, "clean-ups run last-registered first");
});

t.test("a bench that succeeds exits 0 and still cleans up", async (t) => {
  const r = runScript(`bench.defer(async () => { process.stderr.write("cleaned\\n"); });\nawait bench.run(async () => {});`);
  t.equal(r.status, 0);
  t.match(r.stderr, /^cleaned$/m);
});

t.test("--smoke and numeric flags", async (t) => {
  t.equal(smokeMode(["node", "x", "--smoke"]), true);
  t.equal(smokeMode(["node", "x"]), false);
  t.equal(numberArg("vms", 20, ["node", "x", "--vms", "100"]), 100);
  t.equal(numberArg("vms", 20, ["node", "x"]), 20);
  t.throws(() => numberArg("vms", 20, ["node", "x", "--vms", "lots"]), /--vms must be a number/);
});
