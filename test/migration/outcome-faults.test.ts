// The migration fault matrix, on real qemu, in fleet mode (a real etcd): a daemon
// SIGKILLed at each point of a migration, and in every case afterwards exactly one
// qemu runs the guest (or none, the guest held paused at the source with reason
// `outcome-unknown` while nobody can tell), no tick of the guest's counter is ever
// printed on both hosts, the counter never advances on both in the same sample,
// and the disk's marker survives. Cases run concurrently, each on its own pair of
// daemons (a source and a destination may be shared where nothing kills them).
// Points no outside timing hits reliably are reached with the daemon's test hook
// VMHOSTD_TEST_CRASH_AT (src/migration/crash-point.ts).
import { execFileSync } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t, { type Test } from "tap";
import type { JobView } from "../../src/jobs/job-registry.js";
import { findQemuProcesses } from "../../src/qemu/qemu-process.js";
import { problem, startDaemon, waitForBoot, waitForVm, type DaemonOptions, type TestDaemon } from "../helpers/daemon.js";
import { startEtcd } from "../helpers/etcd.js";
import { ensureGuest } from "../helpers/guest.js";
import { sharedGuestPool, waitJob } from "../helpers/migration.js";

const TOKEN = "outcome-faults-token-0123456789";
const BASE_PORT = 18780;
const PATTERN = "0x6b";
const CRASH_AT = "VMHOSTD_TEST_CRASH_AT";

interface Host {
  id: string;
  d: TestDaemon;
  url: string;
  opts: DaemonOptions;
}

interface VmBody {
  state: string;
  pid?: number;
  operation?: { name: string; stage?: string; reason?: string; since?: string };
  owner?: { host: string };
}

t.test("migration fault matrix", { timeout: 400_000 }, async (t) => {
  const began = Date.now();
  const shared = await sharedGuestPool(t);
  const guest = await ensureGuest();
  const etcd = await startEtcd();
  t.teardown(() => etcd.cleanup());
  let nextPort = BASE_PORT;
  const host = async (id: string, env: Record<string, string> = {}, extra: string[] = []): Promise<Host> => {
    const port = nextPort++;
    const opts: DaemonOptions = {
      env,
      args: ["--listen", `127.0.0.1:${port}`, "--pool", `images=${shared}`, "--peer-token", TOKEN, "--etcd", etcd.url, "--host-id", id, "--lease-ttl", "5", ...extra],
    };
    const d = await startDaemon(opts);
    t.teardown(() => d.cleanup());
    return { id, d, url: `http://127.0.0.1:${port}`, opts };
  };
  // The pass-through runs everything on `a`, so only the migration's own guard stands between an operator and `cont`.
  const [a, b1, b2, b6, b7, a3, a4, a5, bs] = await Promise.all([
    host("fm-a", {}, ["--qmp-passthrough", "all"]),
    host("fm-b1"),
    host("fm-b2", { [CRASH_AT]: "incoming-committed" }),
    host("fm-b6", { [CRASH_AT]: "incoming-key-taken" }),
    host("fm-b7"),
    host("fm-a3"),
    host("fm-a4", { [CRASH_AT]: "migrate-switching-over" }),
    host("fm-a5", { [CRASH_AT]: "migrate-committed" }),
    host("fm-bs"),
  ]);

  /** Defines and boots the case's VM on its source, a copied data disk with the marker written before the start. */
  const boot = async (src: Host, name: string): Promise<string> => {
    await src.d.api.json("POST", "/v1/vms", {
      name,
      memoryMiB: 128,
      boot: { kernel: "vmlinuz", initrd: "initrd.img", cmdline: guest.cmdline },
      disks: [{ name: "data", sizeGiB: 1 }],
    });
    execFileSync("qemu-io", ["-f", "qcow2", "-c", `write -P ${PATTERN} 8M 1M`, diskOf(src, name)], { stdio: "ignore" });
    const started = await src.d.api.json<VmBody>("POST", `/v1/vms/${name}/start?wait=true`);
    t.equal(started.owner?.host, src.id, `${name}: ${src.id} owns it`);
    return (await waitForBoot(src.d, name, 1, 150_000)).bootId!;
  };

  const outcomeUnknown = (v: VmBody) => v.state === "paused" && v.operation?.name === "migrate" && v.operation.reason === "outcome-unknown";
  const waits: Record<string, string> = {};

  // Each case ends with `settled` naming the host that runs the guest, checked the same way for all.
  const cases: Record<string, (c: CaseRun) => Promise<void>> = {
    "destination SIGKILLed after prepared": async ({ name, src, dst, t }) => {
      const job = await src.d.api.json<JobView>("POST", `/v1/vms/${name}/migrate`, { destination: dst.url, storage: "copy", bandwidthMiBps: 4 });
      await waitJob(src.d, job.id, (j) => j.phase === "migrating-ram", 90_000);
      t.same(await recordsOf(dst), ["prepared"], "the destination recorded `prepared`");
      await dst.d.kill();
      const held = await waitForVm<VmBody>(src.d, name, outcomeUnknown, 120_000);
      t.equal(held.operation?.stage, "migrating-out", "the view says: paused, migrating out, outcome unknown");
      t.same(await problem(src.d, "POST", `/v1/vms/${name}/resume`), { status: 409, code: "VMH_ERR_MIGRATION_OUTCOME_UNKNOWN" }, "resume refused");
      t.same(
        await problem(src.d, "POST", `/v1/vms/${name}/qmp`, { execute: "cont" }),
        { status: 409, code: "VMH_ERR_MIGRATION_OUTCOME_UNKNOWN" },
        "the pass-through (mode all) refuses `cont`",
      );
      await sleep(1500);
      t.equal((await src.d.api.json<VmBody>("GET", `/v1/vms/${name}`)).state, "paused", "still held paused");
      await dst.d.restart();
      await waitForVm<VmBody>(src.d, name, (v) => v.state === "running" && !v.operation, 90_000);
      t.equal((await waitJob(src.d, job.id, (j) => j.state !== "running")).state, "failed", "the job failed: the guest runs at the source");
      t.same(await recordsOf(dst), ["aborted"], "the restarted destination recorded `aborted`");
    },
    "destination SIGKILLed after committed, before its answer": async ({ name, src, dst, t }) => {
      const job = await src.d.api.json<JobView>("POST", `/v1/vms/${name}/migrate`, { destination: dst.url, storage: "copy" });
      await exited(dst.d, 120_000);
      await waitForVm<VmBody>(src.d, name, outcomeUnknown, 60_000);
      t.same(await recordsOf(dst), ["committed"], "the destination died with `committed` recorded");
      // The operator cannot resume here: the destination holds the owner key.
      t.same(
        await problem(src.d, "POST", `/v1/vms/${name}/migration/resolve`, { outcome: "aborted" }),
        { status: 409, code: "VMH_ERR_VM_OWNED_ELSEWHERE" },
        "an operator's `aborted` is refused: the key is the destination's",
      );
      delete dst.opts.env![CRASH_AT];
      await dst.d.restart();
      t.equal((await waitJob(src.d, job.id, (j) => j.state !== "running", 90_000)).state, "succeeded", "the job succeeded once the destination answered");
    },
    // The destination does not come back in time: the operator decides, and the owner key (still the source's) allows it.
    "destination SIGKILLed after prepared, the operator resolves": async ({ name, src, dst, t }) => {
      const job = await src.d.api.json<JobView>("POST", `/v1/vms/${name}/migrate`, { destination: dst.url, storage: "copy", bandwidthMiBps: 4 });
      await waitJob(src.d, job.id, (j) => j.phase === "migrating-ram", 90_000);
      await dst.d.kill();
      await waitForVm<VmBody>(src.d, name, outcomeUnknown, 120_000);
      const resolved = await src.d.api.request("POST", `/v1/vms/${name}/migration/resolve`, { outcome: "aborted" });
      t.equal(resolved.status, 200, "the operator's `aborted` is accepted: the key is still the source's");
      t.equal((JSON.parse(resolved.body.toString()) as VmBody).state, "running", "and the guest runs here again at once");
      t.equal((await waitJob(src.d, job.id, (j) => j.state !== "running")).state, "failed", "the job failed");
      await dst.d.restart();
      const until = Date.now() + 60_000;
      while (Date.now() < until && (await recordsOf(dst))[0] !== "aborted") await sleep(250);
      t.same(await recordsOf(dst), ["aborted"], "the destination, back, aborted its copy");
    },
    // Between the handover and its record: the key is the destination's, which its recovery takes for the commit.
    "destination SIGKILLed with the owner key taken, nothing recorded": async ({ name, src, dst, t }) => {
      const job = await src.d.api.json<JobView>("POST", `/v1/vms/${name}/migrate`, { destination: dst.url, storage: "copy" });
      await exited(dst.d, 120_000);
      await waitForVm<VmBody>(src.d, name, outcomeUnknown, 60_000);
      t.same(await recordsOf(dst), ["prepared"], "the destination died with only `prepared` recorded");
      delete dst.opts.env![CRASH_AT];
      await dst.d.restart();
      t.equal((await waitJob(src.d, job.id, (j) => j.state !== "running", 90_000)).state, "succeeded", "the restarted destination finished the commit");
      t.same(await recordsOf(dst), ["committed"], "and recorded it");
    },
    "source SIGKILLed before the transfer completed": async ({ name, src, dst, t }) => {
      const job = await src.d.api.json<JobView>("POST", `/v1/vms/${name}/migrate`, { destination: dst.url, storage: "copy", bandwidthMiBps: 4 });
      await waitJob(src.d, job.id, (j) => j.phase === "migrating-ram", 90_000);
      await src.d.kill();
      await sleep(1000);
      await src.d.restart();
      t.pass("restarted: it rolls back, or (qemu finished RAM meanwhile) commits");
    },
    "source SIGKILLed during switch-over": async ({ name, src, dst, t }) => {
      await src.d.api.json<JobView>("POST", `/v1/vms/${name}/migrate`, { destination: dst.url, storage: "copy" });
      await exited(src.d, 120_000);
      t.same(await recordsOf(dst, name), ["prepared"], "the commit was never sent");
      const killedAt = Date.now();
      await sleep(1000);
      delete src.opts.env![CRASH_AT];
      await src.d.restart();
      t.pass(`source back after ${Date.now() - killedAt} ms`);
    },
    "source SIGKILLed after the commit": async ({ name, src, dst, t }) => {
      await src.d.api.json<JobView>("POST", `/v1/vms/${name}/migrate`, { destination: dst.url, storage: "copy" });
      await exited(src.d, 120_000);
      t.same(await recordsOf(dst, name), ["committed"], "the destination committed");
      await sleep(1000);
      delete src.opts.env![CRASH_AT];
      await src.d.restart();
    },
  };
  const plan: [string, string, Host, Host, string | undefined][] = [
    ["destination SIGKILLed after prepared", "fm-prep", a, b1, "fm-a"],
    ["destination SIGKILLed after committed, before its answer", "fm-commit", a, b2, "fm-b2"],
    ["destination SIGKILLed with the owner key taken, nothing recorded", "fm-key", a, b6, "fm-b6"],
    ["destination SIGKILLed after prepared, the operator resolves", "fm-oper", a, b7, "fm-a"],
    ["source SIGKILLed before the transfer completed", "fm-early", a3, bs, undefined],
    // Either is right: the destination commits if the restarted source asks within its 15 s of silence, else it aborted.
    ["source SIGKILLed during switch-over", "fm-switch", a4, bs, undefined],
    ["source SIGKILLed after the commit", "fm-after", a5, bs, "fm-bs"],
  ];

  await Promise.all(
    plan.map(async ([what, name, src, dst, winner]) => {
      const caseStart = Date.now();
      const bootId = await boot(src, name);
      const sampler = sample(src, dst, name, bootId);
      const c: CaseRun = { name, src, dst, t: prefixed(t, what) };
      try {
        await cases[what]!(c);
        await settled(c, winner, bootId);
      } finally {
        sampler.stop();
      }
      const s = await sampler.done;
      t.same(s.onBoth, [], `${what}: no tick printed on both hosts`);
      t.equal(s.bothAdvanced, 0, `${what}: the counter never advanced on both hosts in one sample (${s.samples} samples, ${s.longSamples} over 400 ms not judged)`);
      t.ok(s.maxQemus <= 2, `${what}: at most the two copies of a migration existed`);
      waits[what] = waitedIn(src.d.log(), name, caseStart);
    }),
  );
  t.comment(`outcome-unknown waits: ${JSON.stringify(waits)}`);
  t.comment(`fault matrix took ${Math.round((Date.now() - began) / 1000)} s`);

  /** The end of every case: one host runs the guest (the same boot, the counter going on, the marker there), the other has nothing. */
  async function settled({ name, src, dst, t }: CaseRun, winner: string | undefined, bootId: string): Promise<void> {
    const until = Date.now() + 120_000;
    let runsOn: Host | undefined;
    while (!runsOn && Date.now() < until) {
      for (const h of [src, dst]) {
        const r = await h.d.api.request("GET", `/v1/vms/${name}`).catch(() => undefined);
        const v = r?.status === 200 ? (JSON.parse(r.body.toString()) as VmBody) : undefined;
        const other = h === src ? dst : src;
        const otherGone = (await other.d.api.request("GET", `/v1/vms/${name}`).catch(() => undefined))?.status === 404;
        if (v?.state === "running" && !v.operation && otherGone) runsOn = h;
      }
      if (!runsOn) await sleep(250);
    }
    if (!runsOn) throw new Error(`${name}: never settled on one host`);
    if (winner) t.equal(runsOn.id, winner, `runs on ${winner}`);
    else t.pass(`runs on ${runsOn.id}`);
    const loser = runsOn === src ? dst : src;
    t.same((await findQemuProcesses(loser.d.runDir)).filter((p) => p.name === name), [], `no qemu left on ${loser.id}`);
    t.equal((await findQemuProcesses(runsOn.d.runDir)).filter((p) => p.name === name).length, 1, `exactly one qemu on ${runsOn.id}`);
    const view = await runsOn.d.api.json<VmBody>("GET", `/v1/vms/${name}`);
    t.equal(view.owner?.host, runsOn.id, "the owner key names the host that runs it");
    const first = await lastTick(runsOn, name, bootId);
    const later = Date.now() + 20_000;
    while (Date.now() < later && (await lastTick(runsOn, name, bootId)) <= first + 1) await sleep(250);
    t.ok((await lastTick(runsOn, name, bootId)) > first + 1, `the counter goes on there, same boot (${first} → ${await lastTick(runsOn, name, bootId)})`);
    const out = execFileSync("qemu-io", ["-r", "-U", "-f", "qcow2", "-c", `read -P ${PATTERN} 8M 1M`, diskOf(runsOn, name)], { encoding: "utf8" });
    t.ok(out.includes("read 1048576/1048576") && !out.includes("Pattern verification failed"), "the disk's marker survives");
  }
});

interface CaseRun {
  name: string;
  src: Host;
  dst: Host;
  t: CaseAsserts;
}

interface CaseAsserts {
  equal(found: unknown, wanted: unknown, msg: string): void;
  same(found: unknown, wanted: unknown, msg: string): void;
  ok(found: unknown, msg: string): void;
  pass(msg: string): void;
}

/** The parent test's assertions, each message prefixed with the case (cases run concurrently). */
function prefixed(t: Test, what: string): CaseAsserts {
  return {
    equal: (a, b, m) => void t.equal(a, b, `${what}: ${m}`),
    same: (a, b, m) => void t.same(a, b, `${what}: ${m}`),
    ok: (a, m) => void t.ok(a, `${what}: ${m}`),
    pass: (m) => void t.pass(`${what}: ${m}`),
  };
}

function diskOf(h: Host, name: string): string {
  return path.join(h.d.stateDir, "vms", name, "disks", "data.qcow2");
}

/** The outcomes the destination recorded (for one VM, if named), read from its state directory. */
async function recordsOf(h: Host, vm?: string): Promise<string[]> {
  const dir = path.join(h.d.stateDir, "migrations");
  const out: string[] = [];
  for (const f of (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith(".json") && !n.startsWith("."))) {
    const r = JSON.parse(await readFile(path.join(dir, f), "utf8")) as { vm: string; outcome: string };
    if (!vm || r.vm === vm) out.push(r.outcome);
  }
  return out;
}

async function exited(d: TestDaemon, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (d.proc.exitCode === null && d.proc.signalCode === null && Date.now() < deadline) await sleep(100);
  if (d.proc.exitCode === null && d.proc.signalCode === null) throw new Error(`the daemon did not stop at its crash point:\n${d.log().slice(-3000)}`);
}

/** The guest's ticks of this boot in a host's console log (read from disk: works while its daemon is down). */
async function ticksOn(h: Host, name: string, bootId: string): Promise<number[]> {
  const text = await readFile(path.join(h.d.stateDir, "vms", name, "console.log"), "utf8").catch(() => "");
  return [...text.matchAll(new RegExp(`VMH-TICK (\\d+) boot_id=${bootId}\\r?\\n`, "g"))].map((m) => Number(m[1]));
}

async function lastTick(h: Host, name: string, bootId: string): Promise<number> {
  return Math.max(0, ...(await ticksOn(h, name, bootId)));
}

/**
 * Every 100 ms each host's ticks of the VM, every 500 ms its qemus. A tick number
 * seen on both hosts, or both counters advancing within one sample shorter than a
 * tick (0.5 s of guest time, so a switch-over cannot put the last tick here and the
 * next there in one), would be the guest running twice.
 */
function sample(src: Host, dst: Host, name: string, bootId: string) {
  let stopped = false;
  const seen = [new Set<number>(), new Set<number>()];
  const last = [0, 0];
  const result = { onBoth: [] as number[], bothAdvanced: 0, samples: 0, longSamples: 0, maxQemus: 0 };
  const until = Date.now() + 360_000;
  const ticks = (async () => {
    let at = Date.now();
    while (!stopped && Date.now() < until) {
      const advanced = [false, false];
      for (const [i, h] of [src, dst].entries()) {
        const now = await ticksOn(h, name, bootId);
        for (const n of now) seen[i]!.add(n);
        const max = Math.max(0, ...now);
        if (max > last[i]!) advanced[i] = true;
        last[i] = Math.max(last[i]!, max);
      }
      const took = Date.now() - at;
      at = Date.now();
      // The first sample only reads what the source printed before it.
      if (result.samples > 0 && took > 400) result.longSamples++;
      else if (result.samples > 0 && advanced[0] && advanced[1]) result.bothAdvanced++;
      result.samples++;
      await sleep(100);
    }
    result.onBoth = [...seen[0]!].filter((n) => seen[1]!.has(n));
  })();
  const qemus = (async () => {
    while (!stopped && Date.now() < until) {
      const count = async (h: Host) => (await findQemuProcesses(h.d.runDir)).filter((p) => p.name === name).length;
      result.maxQemus = Math.max(result.maxQemus, (await count(src)) + (await count(dst)));
      await sleep(500);
    }
  })();
  return { stop: () => void (stopped = true), done: Promise.all([ticks, qemus]).then(() => result) };
}

/** How long the source held the guest in outcome-unknown (from its log's settling line), or "never". */
function waitedIn(log: string, vm: string, since: number): string {
  const lines = log.split("\n").filter((l) => l.includes('"waitedMs"'));
  const found = lines
    .map((l) => {
      try {
        return JSON.parse(l) as { waitedMs: number; time: number; vm?: string; msg: string };
      } catch {
        return undefined;
      }
    })
    .filter((x): x is { waitedMs: number; time: number; vm?: string; msg: string } => !!x && x.vm === vm && x.time >= since);
  return found.length ? found.map((f) => `${f.waitedMs} ms (${f.msg})`).join("; ") : "never in outcome-unknown";
}
