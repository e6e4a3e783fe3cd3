// Start-up: from spawning the daemon to `GET /healthz` and `GET /v1/vms` both
// answering 200 on an empty host, for the bundle operators run
// (dist/bundle/vmhostd.js) and for tsc's dist/src/main.js; and `vmctl list`
// from spawn to exit against a daemon with --vms VMs defined (and with no
// daemon at all). Bare `node -e 0` with the same flags is the floor. Runs are
// interleaved, one of each per round, after one untimed warm-up each (which
// also fills the daemon's probe cache, as any start after the first finds it).
// The bundle's launcher writes V8's code cache beside it once a daemon has run
// for 5 s: the bench first makes sure it is there, as it is for any restart of a
// daemon that ran, and times the first start after a build (no cache) as a row of
// its own. Last, --defined VMs (none running) are defined and the bundled daemon
// is restarted on them --runs times, timed until GET /v1/vms lists them all.
//
//   node dist/bench/start-up.js [--runs N] [--vms N] [--defined N] [--smoke]
import { spawn } from "node:child_process";
import { access, chmod, mkdir, mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { BenchRun, numberArg, smokeMode } from "./bench-run.js";
import { formatTable, medianRatio } from "./latency-stats.js";
import { BenchDaemon } from "./vmhostd-daemon.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const entries = {
  bundle: { daemon: path.join(repoRoot, "dist/bundle/vmhostd.js"), vmctl: path.join(repoRoot, "dist/bundle/vmctl.js") },
  tsc: { daemon: path.join(repoRoot, "dist/src/main.js"), vmctl: path.join(repoRoot, "dist/src/cli/vmctl.js") },
};
const bench = new BenchRun("start-up");
/** Where the bundle's launcher keeps V8's code cache (src/launch/vmhostd-launcher.ts). */
const codeCache = path.join(path.dirname(entries.bundle.daemon), "vmhostd.cjs.v8-cache");
/** The launcher writes the cache this long after a start that found none (or a rejected one), plus a margin. */
const CODE_CACHE_WRITTEN_MS = 7_000;
/** A start that has not answered in this long is a failure, not a sample. */
const START_DEADLINE_MS = 30_000;

async function nodeFlags(): Promise<string[]> {
  const first = (await readFile(entries.bundle.daemon, "utf8")).split("\n", 1)[0] ?? "";
  return /^#!\S*env -S node(.*)$/.exec(first)?.[1]?.trim().split(/\s+/) ?? [];
}

function getBody(socket: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.request({ socketPath: socket, path: urlPath, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", () => resolve({ status: 0, body: "" })); // not listening yet
    req.end();
  });
}
const get = async (socket: string, urlPath: string): Promise<number> => (await getBody(socket, urlPath)).status;

/** Whether GET /v1/vms answers 200 with `count` VMs. */
async function lists(socket: string, count: number): Promise<boolean> {
  const r = await getBody(socket, "/v1/vms");
  return r.status === 200 && (JSON.parse(r.body) as { vms: unknown[] }).vms.length === count;
}

/** Spawns the daemon on `root` and times it until /healthz and /v1/vms (with `vms` VMs) both answer 200; then SIGKILLs it. */
async function timeStart(daemon: string, root: string, flags: string[], vms = 0): Promise<number> {
  const socket = path.join(root, "run", "vmhostd.sock");
  const args = [...flags, daemon, "--state-dir", path.join(root, "state"), "--run-dir", path.join(root, "run"), "--accel", "tcg", "--log-level", "warn"];
  const t0 = performance.now();
  const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`${daemon} exited at start (${child.exitCode}): ${stderr}`);
      if ((await get(socket, "/healthz")) === 200 && (await lists(socket, vms))) return performance.now() - t0;
      if (performance.now() - t0 > START_DEADLINE_MS) throw new Error(`${daemon}: no answer in ${START_DEADLINE_MS} ms: ${stderr}`);
      await sleep(2);
    }
  } finally {
    const gone = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await gone;
  }
}

/** Times one start with the code cache set aside, as the first start after a build or an upgrade finds it. */
async function timeStartWithoutCodeCache(start: () => Promise<number>): Promise<number> {
  const aside = `${codeCache}.bench-aside`;
  await rename(codeCache, aside);
  try {
    return await start();
  } finally {
    await rename(aside, codeCache);
  }
}

/** Spawn to exit of a node program; a non-zero exit is an error naming its stderr. */
function timeRun(args: string[], okCodes = [0]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.once("exit", (code) => (okCodes.includes(code ?? -1) ? resolve(performance.now() - t0) : reject(new Error(`${args.join(" ")}: exit ${code}: ${stderr}`))));
  });
}

async function main(): Promise<void> {
  const smoke = smokeMode();
  const runs = smoke ? 1 : numberArg("runs", 20);
  const vms = smoke ? 3 : numberArg("vms", 200);
  // The second figure: a restart listing this many defined (not running) VMs.
  const defined = smoke ? 5 : numberArg("defined", 500);
  const flags = await nodeFlags();

  const roots: Record<string, string> = {};
  for (const name of ["bundle", "tsc"]) {
    // Short: socket paths below it must fit in 107 bytes.
    const root = await mkdtemp("/tmp/vbs-");
    bench.defer(() => rm(root, { recursive: true, force: true }));
    await chmod(root, 0o711);
    await mkdir(path.join(root, "state"), { recursive: true });
    roots[name] = root;
  }
  const launchedAt = performance.now();
  const daemon = await BenchDaemon.launch(entries.bundle.daemon);
  bench.defer(() => daemon.shutdown());
  await daemon.waitReady();
  for (let i = 0; i < vms; i++) await daemon.expect(201, "POST", "/v1/vms", { name: `su${String(i).padStart(3, "0")}`, memoryMiB: 64 });
  // This daemon's launcher writes the code cache if the build has none yet (or one another node rejects).
  const cacheBefore = await stat(codeCache).then((s) => s.mtimeMs, () => 0);
  await sleep(Math.max(0, CODE_CACHE_WRITTEN_MS - (performance.now() - launchedAt)));
  const cacheAfter = await stat(codeCache).then((s) => s.mtimeMs, () => 0);
  await access(codeCache).catch(() => {
    throw new Error(`${codeCache}: no code cache written by a daemon that ran ${CODE_CACHE_WRITTEN_MS} ms`);
  });
  process.stderr.write(cacheAfter !== cacheBefore ? "code cache: written by the first daemon\n" : "code cache: already in place\n");
  const absent = path.join(daemon.root, "no-daemon.sock");
  const list = (vmctl: string): string[] => [vmctl, "--socket", daemon.socket, "list"];

  const rows = {
    node: [] as number[],
    startBundle: [] as number[],
    startBundleCold: [] as number[],
    startTsc: [] as number[],
    listBundle: [] as number[],
    listTsc: [] as number[],
    listAbsent: [] as number[],
    startDefined: [] as number[],
  };
  const round = async (keep: boolean): Promise<void> => {
    const put = (a: number[], v: number): void => void (keep && a.push(v));
    put(rows.node, await timeRun([...flags, "-e", "0"]));
    put(rows.startBundle, await timeStart(entries.bundle.daemon, roots.bundle!, flags));
    put(rows.startBundleCold, await timeStartWithoutCodeCache(() => timeStart(entries.bundle.daemon, roots.bundle!, flags)));
    put(rows.startTsc, await timeStart(entries.tsc.daemon, roots.tsc!, flags));
    put(rows.listBundle, await timeRun(list(entries.bundle.vmctl)));
    put(rows.listTsc, await timeRun(list(entries.tsc.vmctl)));
    put(rows.listAbsent, await timeRun([entries.bundle.vmctl, "--socket", absent, "list"], [1]));
  };
  await round(false); // warm-up: page cache, and each state directory's probe cache
  for (let i = 1; i <= runs; i++) {
    await round(true);
    process.stderr.write(`run ${i}/${runs}: bundle ${rows.startBundle.at(-1)!.toFixed(0)} ms, tsc ${rows.startTsc.at(-1)!.toFixed(0)} ms\n`);
  }
  // A daemon with `defined` VMs (none running) restarted on the same state, until GET /v1/vms lists them all.
  await daemon.shutdown();
  const many = await BenchDaemon.launch(entries.bundle.daemon);
  bench.defer(() => many.shutdown());
  await many.waitReady();
  for (let i = 0; i < defined; i++) await many.expect(201, "POST", "/v1/vms", { name: `sd${String(i).padStart(3, "0")}`, memoryMiB: 64 });
  await many.kill();
  for (let i = 0; i <= runs; i++) {
    const ms = await timeStart(entries.bundle.daemon, many.root, flags, defined);
    if (i > 0) rows.startDefined.push(ms); // the first is the warm-up
  }
  const out = [
    `start-up: spawn -> GET /healthz and GET /v1/vms answer 200 (empty host); vmctl list spawn -> exit (${vms} VMs defined); ${runs} runs each, interleaved`,
    `host: ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}; node ${process.version} ${flags.join(" ")}`,
    "",
    formatTable([
      { label: "node -e 0 (same flags)", samples: rows.node },
      { label: "vmhostd bundle: spawn -> API answers", samples: rows.startBundle },
      { label: "vmhostd bundle, no code cache (first start after a build)", samples: rows.startBundleCold },
      { label: "vmhostd tsc dist: spawn -> API answers", samples: rows.startTsc },
      { label: `vmctl list, bundle (${vms} VMs)`, samples: rows.listBundle },
      { label: `vmctl list, tsc dist (${vms} VMs)`, samples: rows.listTsc },
      { label: "vmctl list, bundle, no daemon", samples: rows.listAbsent },
      { label: `vmhostd bundle: spawn -> ${defined} defined listed`, samples: rows.startDefined },
    ]),
    "",
    `median ratios: daemon bundle/tsc ${medianRatio(rows.startBundle, rows.startTsc)}   vmctl bundle/tsc ${medianRatio(rows.listBundle, rows.listTsc)}`,
  ];
  process.stdout.write(out.join("\n") + "\n");
}

await bench.run(main);
