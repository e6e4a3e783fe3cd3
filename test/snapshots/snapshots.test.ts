// Snapshots of a running guest's disk, against real qemu and the guest's own
// view of its disk (sectors it writes and reads through its shell): a snapshot
// taken live, a daemon killed between qemu switching onto the overlays and the
// record naming them, a middle snapshot merged away live with the daemon killed
// after the merge, the top one merged by an active commit, a revert while
// stopped, a snapshot and a merge while stopped, --max-snapshots, and the
// refusals. The guest also plays the noisy neighbour under a writeBps limit:
// its O_DIRECT writes must stay in the VM's throttle group on the overlay a
// snapshot puts on top of its disk, and after the merge that takes it away.
// One daemon and one guest throughout.
import { readFile, access } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { defineShellVm, problem, startDaemon, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { readSector, shellRun, writeSector } from "../helpers/guest-shell.js";
import { imageFile } from "../../src/vm/snapshots/block-graph.js";

const VM = "snap";

interface SnapshotList {
  snapshots: { name: string; parent?: string; memory: boolean; disks: string[]; bytes: number }[];
}

async function list(d: TestDaemon): Promise<SnapshotList["snapshots"]> {
  return (await d.api.json<SnapshotList>("GET", `/v1/vms/${VM}/snapshots`)).snapshots;
}

async function chain(d: TestDaemon): Promise<string[]> {
  const record = JSON.parse(await readFile(path.join(d.stateDir, "vms", VM, "snapshots.json"), "utf8")) as { chains: Record<string, string[]> };
  return record.chains.data ?? [];
}

/** The image qemu writes for the disk now, as qemu reports it. */
async function qemuTop(d: TestDaemon): Promise<string> {
  const res = await d.api.json<{ return: { qdev?: string; inserted?: { file: string } }[] }>("POST", `/v1/vms/${VM}/qmp`, { execute: "query-block" });
  const disk = res.return.find((b) => b.qdev?.includes("disk-data"));
  const file = imageFile(disk!.inserted!.file)!;
  return path.relative(path.join(d.stateDir, "vms", VM), file);
}

async function until<T>(what: string, f: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(200);
  }
}

async function jobDone(d: TestDaemon, id: string): Promise<{ state: string; result?: Record<string, unknown>; error?: unknown }> {
  return until("job end", async () => {
    const j = await d.api.json<{ state: string; result?: Record<string, unknown>; error?: unknown }>("GET", `/v1/jobs/${id}`);
    return j.state === "running" ? undefined : j;
  });
}

const MiB = 1024 * 1024;
const WRITE_BPS = 2 * MiB;
let timedRuns = 0;

/** Host wall time for the guest to write 6 MiB with O_DIRECT at 32 MiB into its disk (past the marker sectors). */
async function timedWrite(d: TestDaemon): Promise<number> {
  const n = ++timedRuns;
  const t0 = performance.now();
  const m = await shellRun(d, VM, `dd if=/dev/zero of=/dev/vda bs=64k count=96 seek=512 oflag=direct 2>/dev/null; echo D$((${n}+0))-$?`, new RegExp(`D${n}-(\\d+)`), 60_000);
  if (m[1] !== "0") throw new Error(`the guest's dd failed (exit ${m[1]})`);
  return (performance.now() - t0) / 1000;
}

/** 6 MiB at WRITE_BPS: within ±20% of 3 s (a write escaping the throttle takes a fraction of that). */
async function heldAtLimit(t: { ok(v: boolean, m: string): unknown }, d: TestDaemon, when: string): Promise<void> {
  const want = (96 * 64 * 1024) / WRITE_BPS;
  const got = await timedWrite(d);
  t.ok(Math.abs(got - want) <= want * 0.2, `${when}: 6 MiB took ${got.toFixed(2)} s, within ±20% of ${want.toFixed(2)} s`);
}

async function exited(d: TestDaemon): Promise<void> {
  await until("daemon exit", async () => (d.proc.exitCode !== null || d.proc.signalCode !== null ? true : undefined), 60_000);
}

async function startAndPrompt(d: TestDaemon): Promise<void> {
  const before = (await d.api.request("GET", `/v1/vms/${VM}/console/log`)).body.length;
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await until("shell prompt", async () => ((await d.api.request("GET", `/v1/vms/${VM}/console/log`)).body.subarray(before).toString().includes("vmh# ") ? true : undefined));
}

t.test("snapshots: live, killed daemon, live merges, revert, stopped merge, limits", async (t) => {
  const env: NodeJS.ProcessEnv = { VMHOSTD_TEST_CRASH_AT: "snapshot-switched" };
  const d = await startDaemon({ env, args: ["--max-snapshots", "3", "--peer-token", "snapshot-test-token-0123"] });
  t.teardown(() => d.cleanup());
  await defineShellVm(d, VM);
  // A second definition change: the shell guest with one disk of its own.
  await d.api.json("POST", `/v1/vms/${VM}/disks`, { name: "data", sizeGiB: 0.0625 });
  await startAndPrompt(d);

  t.equal((await problem(d, "POST", `/v1/vms/${VM}/snapshots`, { name: "Bad Name" })).code, "VMH_ERR_VALIDATION", "a bad snapshot name is a 400");
  t.equal((await problem(d, "POST", `/v1/vms/${VM}/snapshots/none/revert`, {})).code, "VMH_ERR_SNAPSHOT_NOT_FOUND", "an unknown snapshot is a 404");

  await d.api.json("PATCH", `/v1/vms/${VM}/limits`, { disk: { writeBps: WRITE_BPS } });
  await heldAtLimit(t, d, "before any snapshot");
  await writeSector(d, VM, 1000, "MARK-A");

  // The daemon kills itself once qemu writes the overlay and before the record names it.
  const cut = await d.api.request("POST", `/v1/vms/${VM}/snapshots`, { name: "s1" }).catch((e: unknown) => e);
  t.ok(cut instanceof Error, `the request is cut short by the daemon's death: ${cut instanceof Error ? cut.message : JSON.stringify(cut)}`);
  await exited(d);
  env.VMHOSTD_TEST_CRASH_AT = "snapshot-merged";
  await d.restart();
  const afterCrash = await until("recovered snapshot", async () => ((await list(d)).length === 1 ? await list(d) : undefined));
  t.same(afterCrash.map((s) => s.name), ["s1"], "the restarted daemon finished the snapshot qemu had already switched to");
  t.same(await chain(d), ["disks/data.qcow2", "snapshots/data.1.qcow2"], "the record names the overlay");
  t.equal(await qemuTop(d), "snapshots/data.1.qcow2", "qemu writes the overlay");
  await heldAtLimit(t, d, "on the snapshot's overlay");
  const unplug = await problem(d, "DELETE", `/v1/vms/${VM}/disks/data`);
  t.same([unplug.status, unplug.code], [409, "VMH_ERR_SNAPSHOT_UNSUPPORTED"], "a disk with snapshots is not hot-removed");
  const away = await problem(d, "POST", `/v1/vms/${VM}/migrate`, { destination: "http://127.0.0.1:9", storage: "shared" });
  t.same([away.status, away.code], [409, "VMH_ERR_SNAPSHOTS_NOT_MIGRATED"], "a VM with snapshots is not migrated with storage shared (storage copy: snapshot-migration.test.ts)");

  await writeSector(d, VM, 2000, "MARK-B");
  await d.api.json("POST", `/v1/vms/${VM}/snapshots`, { name: "s2" });
  await writeSector(d, VM, 3000, "MARK-C");
  await d.api.json("POST", `/v1/vms/${VM}/snapshots`, { name: "s3" });
  await writeSector(d, VM, 4000, "MARK-D");
  t.same((await list(d)).map((s) => [s.name, s.parent ?? null]), [["s1", null], ["s2", "s1"], ["s3", "s2"]], "listed oldest first with parents");
  t.equal((await chain(d)).length, 4, "three overlays on the base");
  const refused = await problem(d, "POST", `/v1/vms/${VM}/snapshots`, { name: "s4" });
  t.same([refused.status, refused.code], [409, "VMH_ERR_TOO_MANY_SNAPSHOTS"], "a fourth snapshot is refused at --max-snapshots 3");

  // The middle snapshot merged away live; the daemon dies after the merge, before the record says so.
  const del = await d.api.request("DELETE", `/v1/vms/${VM}/snapshots/s2`);
  t.equal(del.status, 202, "a delete answers with its job");
  await exited(d);
  delete env.VMHOSTD_TEST_CRASH_AT;
  await d.restart();
  const merged = await until("merged s2", async () => ((await list(d)).length === 2 ? await list(d) : undefined));
  t.same(merged.map((s) => [s.name, s.parent ?? null]), [["s1", null], ["s3", "s1"]], "s2 is gone and s3 follows s1");
  t.same(await chain(d), ["disks/data.qcow2", "snapshots/data.1.qcow2", "snapshots/data.3.qcow2"], "the chain is one shorter");
  await t.rejects(access(path.join(d.stateDir, "vms", VM, "snapshots/data.2.qcow2")), "the merged layer's file is removed");
  for (const [sector, mark] of [[1000, "MARK-A"], [2000, "MARK-B"], [3000, "MARK-C"], [4000, "MARK-D"]] as const) {
    t.equal(await readSector(d, VM, sector), mark, `the guest reads ${mark} after the live merge`);
  }

  // The newest snapshot: its layer is the one the guest writes (an active commit).
  const job = await d.api.json<{ id: string }>("DELETE", `/v1/vms/${VM}/snapshots/s3`);
  t.equal((await jobDone(d, job.id)).state, "succeeded", "the active commit completes");
  t.same(await chain(d), ["disks/data.qcow2", "snapshots/data.1.qcow2"], "the guest writes the layer of s1 again");
  t.equal(await qemuTop(d), "snapshots/data.1.qcow2", "qemu moved the disk onto it");
  t.equal(await readSector(d, VM, 4000), "MARK-D", "the guest's last write survived the active commit");
  await heldAtLimit(t, d, "after the active commit moved the disk back onto s1's layer");
  await writeSector(d, VM, 5000, "MARK-E");

  const running = await problem(d, "POST", `/v1/vms/${VM}/snapshots/s1/revert`, {});
  t.same([running.status, running.code], [409, "VMH_ERR_VM_STATE"], "a revert of a running VM without force is refused");

  // Revert while stopped: everything written after s1 is gone.
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  await waitForVm(d, VM, (v: { state: string }) => v.state === "stopped");
  await d.api.json("POST", `/v1/vms/${VM}/snapshots/s1/revert`, {});
  await startAndPrompt(d);
  t.equal(await readSector(d, VM, 1000), "MARK-A", "the write before s1 is there");
  for (const sector of [2000, 4000, 5000]) t.equal(await readSector(d, VM, sector), "", `sector ${sector}, written after s1, is gone`);

  // A snapshot and a merge while stopped.
  await writeSector(d, VM, 6000, "MARK-F");
  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  await waitForVm(d, VM, (v: { state: string }) => v.state === "stopped");
  await d.api.json("POST", `/v1/vms/${VM}/snapshots`, { name: "cold" });
  const coldChain = await chain(d);
  t.equal(coldChain.length, 3, "a stopped VM's snapshot adds an overlay");
  const offline = await d.api.json<{ id: string }>("DELETE", `/v1/vms/${VM}/snapshots/s1`);
  t.equal((await jobDone(d, offline.id)).state, "succeeded", "the stopped merge completes");
  t.same((await list(d)).map((s) => s.name), ["cold"]);
  t.equal((await chain(d)).length, 2, "merged into the base");
  await startAndPrompt(d);
  t.equal(await readSector(d, VM, 1000), "MARK-A", "data below the merge is intact");
  t.equal(await readSector(d, VM, 6000), "MARK-F", "data merged into the base is intact");
});
