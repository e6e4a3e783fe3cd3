// A clean first impression: `npm start` (and so the systemd unit's command) starts
// the daemon without a single Warning line on stderr — no deprecation, no
// experimental feature. fastify's disableRequestLogging deprecation used to show
// on every start; any new one fails here. Both cases run the bundle (dist/bundle).
import { spawn } from "node:child_process";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { ApiClient } from "../../src/cli/api-client.js";
import { distRoot } from "../helpers/dist-root.js";
import { startEtcd } from "../helpers/etcd.js";

const repoRoot = path.dirname(distRoot);
/** node's own warning lines ("(node:123) [DEP0040] DeprecationWarning: ...", "ExperimentalWarning", fastify's FSTDEP...). */
const WARNING = /Warning|\bFSTDEP\d+|\bDEP\d{4}\b/;

t.test("npm start's daemon prints no warning while it starts and serves its first requests", { timeout: 180_000 }, async (t) => {
  // Short: the socket paths below it must fit in 107 bytes.
  const root = await mkdtemp("/tmp/vn-");
  await chmod(root, 0o711);
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const socket = path.join(root, "run", "vmhostd.sock");
  // Its own process group: npm runs a shell that runs node; the whole group is stopped at the end.
  const npm = spawn("npm", ["start", "--silent", "--", "--state-dir", path.join(root, "state"), "--run-dir", path.join(root, "run"), "--accel", "tcg"], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stderr = "";
  let stdout = "";
  npm.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  npm.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  const exited = new Promise((r) => npm.once("exit", r));
  t.teardown(async () => {
    try {
      process.kill(-npm.pid!, "SIGTERM");
    } catch {
      return; // already gone
    }
    await Promise.race([exited, sleep(15_000)]);
  });

  const api = new ApiClient({ socketPath: socket });
  const until = Date.now() + 150_000; // setup.sh may have to build first
  let ready = false;
  while (!ready && Date.now() < until && npm.exitCode === null) {
    ready = await api.request("GET", "/healthz", undefined, 1000).then((r) => r.status === 200, () => false);
    if (!ready) await sleep(100);
  }
  t.ok(ready, `the daemon answered /healthz; stderr:\n${stderr}`);
  // The first requests load what start-up left for later (lazily loaded modules warn when loaded).
  for (const url of ["/v1/vms", "/v1/host", "/metrics", "/openapi.json"]) t.equal((await api.request("GET", url)).status, 200, url);
  await sleep(300);
  const warnings = [...stderr.split("\n"), ...stdout.split("\n")].filter((l) => WARNING.test(l));
  t.same(warnings, [], "no warning lines");
});

// Fleet mode loads what the bundle leaves in node_modules (etcd3 reads its .proto files
// beside its code) and spawns the fence process from the bundle's directory: both must
// work from dist/bundle, without a warning. The other fleet tests run tsc's dist/src.
t.test("the bundled daemon in fleet mode loads etcd3 and runs its fence process, without warnings", { timeout: 120_000 }, async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  const root = await mkdtemp("/tmp/vn-");
  await chmod(root, 0o711);
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const runDir = path.join(root, "run");
  const bundle = path.join(distRoot, "bundle", "vmhostd.js");
  const flags = /^#!\S*env -S node(.*)$/.exec((await readFile(bundle, "utf8")).split("\n", 1)[0] ?? "")?.[1]?.trim().split(/\s+/) ?? [];
  const args = [...flags, bundle, "--state-dir", path.join(root, "state"), "--run-dir", runDir, "--accel", "tcg"];
  const daemon = spawn(process.execPath, [...args, "--etcd", etcd.url, "--host-id", "bundle-1", "--lease-ttl", "5"], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  daemon.stdout.on("data", (c: Buffer) => (output += c.toString()));
  daemon.stderr.on("data", (c: Buffer) => (output += c.toString()));
  const exited = new Promise((r) => daemon.once("exit", r));
  let fencePid = 0;
  t.teardown(async () => {
    if (fencePid > 0) {
      try {
        process.kill(fencePid, "SIGKILL"); // the fence outlives the daemon by design
      } catch {
        // gone
      }
    }
    if (daemon.exitCode === null) daemon.kill("SIGTERM");
    await Promise.race([exited, sleep(15_000)]);
  });

  const api = new ApiClient({ socketPath: path.join(runDir, "vmhostd.sock") });
  const until = Date.now() + 60_000;
  let ready = false;
  while (!ready && Date.now() < until && daemon.exitCode === null) {
    ready = await api.request("GET", "/healthz", undefined, 1000).then((r) => r.status === 200, () => false);
    if (!ready) await sleep(100);
  }
  t.ok(ready, `the daemon answered /healthz in fleet mode; output:\n${output.slice(-3000)}`);
  t.equal((await api.request("GET", "/v1/fleet/hosts")).status, 200, "etcd3 answers through the bundle");
  let cmdline = "";
  for (let i = 0; i < 100 && !cmdline.includes("fence-main.js"); i++) {
    fencePid = Number((await readFile(path.join(runDir, "fence", "fence.pid"), "utf8").catch(() => "0")).trim());
    cmdline = fencePid > 0 ? (await readFile(`/proc/${fencePid}/cmdline`, "utf8").catch(() => "")).split("\0").join(" ") : "";
    if (!cmdline.includes("fence-main.js")) await sleep(100);
  }
  t.match(cmdline, path.join(distRoot, "bundle", "fence-main.js"), "the fence process runs from the bundle's directory");
  t.same(output.split("\n").filter((l) => WARNING.test(l)), [], "no warning lines");
});
