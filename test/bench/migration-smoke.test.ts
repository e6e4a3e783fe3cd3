// The migration bench still runs: one short round of each mode (`--smoke`), as an
// operator would start it, with its figures printed. The figures themselves are
// never asserted (bench/README.md); a bench that no longer gets to them is.
import { spawn } from "node:child_process";
import path from "node:path";
import t from "tap";
import { distRoot } from "../helpers/dist-root.js";

const benchJs = path.join(distRoot, "bench/migration.js");

/** Runs the bench with `args`; its exit code, stdout and the tail of stderr. */
function runBench(args: string[], timeoutMs: number): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [benchJs, ...args], { stdio: ["ignore", "pipe", "pipe"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root" } });
    let out = "";
    let err = "";
    proc.stdout.on("data", (c: Buffer) => (out += c.toString()));
    proc.stderr.on("data", (c: Buffer) => (err = (err + c.toString()).slice(-4000)));
    // SIGTERM: the bench stops its daemons and qemus before it exits.
    const timer = setTimeout(() => proc.kill("SIGTERM"), timeoutMs);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

t.test("bench/migration --smoke: vmhostd against by hand, one run", { timeout: 150_000 }, async (t) => {
  const r = await runBench(["--smoke"], 140_000);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.err})`);
  t.match(r.out, /256 MiB idle\s+vmhostd: POST migrate -> job ended\s+1\s/, "a vmhostd total time was measured");
  t.match(r.out, /256 MiB idle\s+by hand: spawn dest -> dest cont\s+1\s/, "and a by-hand one");
});

t.test("bench/migration --tls --smoke: in clear against TLS, one run", { timeout: 150_000 }, async (t) => {
  const r = await runBench(["--tls", "--smoke"], 140_000);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.err})`);
  t.match(r.out, /\| in clear \| 1 \| \d+ \| \d+ \| \d+ \| \d+ \| \d+ \|/, "the migration in clear was measured");
  t.match(r.out, /\| TLS \| 1 \| \d+ \| \d+ \| \d+ \| \d+ \| \d+ \|/, "and the one over TLS");
});
