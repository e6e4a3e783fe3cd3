// A snapshot with memory, against real qemu: the guest's tick counter runs on
// after the snapshot and a sector is written, then a forced revert brings the
// guest back exactly where it was: the counter resumes from the snapshot's
// value, with the same boot id (no reboot), and the write made after the
// snapshot is gone from its disk while the one before is still there. Before
// that, the same revert on a daemon whose memory admission refuses it is refused
// as a start is, and the guest runs on untouched.
import { access } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import t from "tap";
import { consoleAfter, consoleSize, defineShellVm, problem, startDaemon, waitForVm, type TestDaemon } from "../helpers/daemon.js";
import { readSector, shellRun, writeSector } from "../helpers/guest-shell.js";

const VM = "mem";
const TICK = /VMH-TICK (\d+) boot_id=([0-9a-f-]{36})/g;

async function ticksAfter(d: TestDaemon, offset: number): Promise<{ n: number; boot: string }[]> {
  const text = (await d.api.request("GET", `/v1/vms/${VM}/console/log?offset=${offset}`)).body.toString("utf8");
  return [...text.matchAll(TICK)].map((m) => ({ n: Number(m[1]), boot: m[2]! }));
}

async function tickAtLeast(d: TestDaemon, offset: number, n: number, timeoutMs = 60_000): Promise<{ n: number; boot: string }[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ticks = await ticksAfter(d, offset);
    if (ticks.some((x) => x.n >= n)) return ticks;
    if (Date.now() > end) throw new Error(`no tick ${n} within ${timeoutMs} ms (last ${ticks.at(-1)?.n})`);
    await sleep(200);
  }
}

t.test("snapshot with memory: revert resumes the guest where it was", async (t) => {
  const d = await startDaemon();
  t.teardown(() => d.cleanup());
  await defineShellVm(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/disks`, { name: "data", sizeGiB: 0.0625 });
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await waitForVm(d, VM, (v: { state: string }) => v.state === "running");
  // Typed before the shell's prompt, a command loses its first characters to the kernel's console.
  await consoleAfter(d, VM, 0, /vmh# /, 120_000);
  await shellRun(d, VM, "echo P$((1+1))", /P2/, 60_000);

  await writeSector(d, VM, 1000, "MARK-A");
  const start = await consoleSize(d, VM);
  // A ticker of the guest's own time, as the non-shell guest prints (test/fixtures/guest/init).
  await shellRun(d, VM, `(n=0; b=$(cat /proc/sys/kernel/random/boot_id); while :; do sleep 0.5; n=$((n+1)); echo "VMH-TICK $n boot_id=$b"; done) &`, /VMH-TICK 1 /);
  await tickAtLeast(d, start, 4);

  const res = await d.api.request("POST", `/v1/vms/${VM}/snapshots`, { name: "m1", memory: true });
  t.equal(res.status, 201, "the snapshot with memory is taken on the running guest");
  const atSnapshot = await ticksAfter(d, start);
  const bootId = atSnapshot[0]!.boot;
  const lastBefore = atSnapshot.at(-1)!.n;
  t.equal((await d.api.json<{ state: string }>("GET", `/v1/vms/${VM}`)).state, "running", "the guest runs on after the snapshot");
  await access(path.join(d.stateDir, "vms", VM, "snapshots/m1.vmstate"));
  t.same(
    (await d.api.json<{ snapshots: { name: string; memory: boolean }[] }>("GET", `/v1/vms/${VM}/snapshots`)).snapshots.map((s) => [s.name, s.memory]),
    [["m1", true]],
  );

  await writeSector(d, VM, 2000, "MARK-B");
  const ranOn = await tickAtLeast(d, start, lastBefore + 8);
  t.ok(ranOn.at(-1)!.n >= lastBefore + 8, "the counter ran on past the snapshot");

  const noForce = await problem(d, "POST", `/v1/vms/${VM}/snapshots/m1/revert`, {});
  t.equal(noForce.code, "VMH_ERR_VM_STATE", "a running VM is reverted only with force");
  // Resuming the snapshot's memory starts a guest: it is admitted as a start is. A daemon that keeps all the
  // host's memory for itself refuses it with the start's error, before anything changes.
  const pid = (await d.api.json<{ pid?: number }>("GET", `/v1/vms/${VM}`)).pid;
  await d.kill();
  await d.restart(["--reserve-memory", String(1 << 30)]);
  const noMemory = await problem(d, "POST", `/v1/vms/${VM}/snapshots/m1/revert`, { force: true });
  t.same([noMemory.status, noMemory.code], [409, "VMH_ERR_INSUFFICIENT_MEMORY"], "a revert with memory the host cannot admit is refused as a start is");
  const untouched = await d.api.json<{ state: string; pid?: number }>("GET", `/v1/vms/${VM}`);
  t.same([untouched.state, untouched.pid], ["running", pid], "the guest runs on in the same qemu");
  t.equal(await readSector(d, VM, 2000), "MARK-B", "its disk is not reverted");
  await d.kill();
  await d.restart();

  const before = await consoleSize(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/snapshots/m1/revert`, { force: true });
  t.equal((await d.api.json<{ state: string }>("GET", `/v1/vms/${VM}`)).state, "running", "the guest runs after the revert");
  const after = await tickAtLeast(d, before, 1);
  const first = after[0]!;
  t.ok(first.n <= lastBefore + 2, `the counter went back to the snapshot's value (${first.n}, snapshot at about ${lastBefore}, it had reached ${ranOn.at(-1)!.n})`);
  t.equal(first.boot, bootId, "the same boot: the guest did not restart");
  const log = (await d.api.request("GET", `/v1/vms/${VM}/console/log?offset=${before}`)).body.toString("utf8");
  t.notMatch(log, /VMH-BOOT/, "no boot after the revert");

  t.equal(await readSector(d, VM, 2000), "", "the write made after the snapshot is gone from the disk");
  t.equal(await readSector(d, VM, 1000), "MARK-A", "the write made before it is there");

  await d.api.json("POST", `/v1/vms/${VM}/stop`);
  const stopped = await problem(d, "POST", `/v1/vms/${VM}/snapshots`, { name: "m2", memory: true });
  t.equal(stopped.code, "VMH_ERR_VM_STATE", "a stopped VM has no memory to save");
});
