// Full vs incremental backup of one disk of a running guest: the guest fills
// the disk with random data, a full backup is taken, the guest rewrites 5% of
// it, and an incremental backup follows. Printed per backup: the time from the
// request to the job's end, and the bytes its image holds (what was read from
// the disk and written). --smoke: a 64 MiB disk, for the test suite to check
// that the bench runs; the figures are the 1 GiB run.
import { stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { consoleAfter, defineShellVm, startDaemon, type TestDaemon } from "../test/helpers/daemon.js";
import { shellRun } from "../test/helpers/guest-shell.js";
import { BenchRun, smokeMode } from "./bench-run.js";

const smoke = smokeMode();
const diskMiB = smoke ? 64 : 1024;
const changedMiB = Math.max(1, Math.round(diskMiB * 0.05));
const VM = "bench";

async function backup(d: TestDaemon, target: string, mode: "full" | "incremental"): Promise<{ ms: number; bytes: number; mode: string }> {
  const t0 = performance.now();
  const job = await d.api.json<{ id: string }>("POST", `/v1/vms/${VM}/disks/data/backup`, { target, mode });
  for (;;) {
    const j = await d.api.json<{ state: string; result?: { mode: string }; error?: unknown }>("GET", `/v1/jobs/${job.id}`);
    if (j.state === "succeeded") {
      const ms = performance.now() - t0;
      const bytes = (await stat(path.join(d.stateDir, "images", target))).blocks * 512;
      return { ms, bytes, mode: j.result!.mode };
    }
    if (j.state !== "running") throw new Error(`backup ${target}: ${j.state} ${JSON.stringify(j.error)}`);
    await sleep(50);
  }
}

const bench = new BenchRun("backup");
await bench.run(async () => {
  const d = await startDaemon();
  bench.defer(() => d.cleanup());
  await defineShellVm(d, VM);
  await d.api.json("POST", `/v1/vms/${VM}/disks`, { name: "data", sizeGiB: diskMiB / 1024 });
  await d.api.json("POST", `/v1/vms/${VM}/start`);
  await consoleAfter(d, VM, 0, /vmh# /, 120_000);
  await shellRun(d, VM, "echo P$((1+2))", /P3/, 60_000);
  process.stderr.write(`filling the ${diskMiB} MiB disk with random data in the guest\n`);
  await shellRun(d, VM, `dd if=/dev/urandom of=/dev/vda bs=1M count=${diskMiB} conv=fsync 2>/dev/null; echo F$((4+4))`, /F8/, 30 * 60_000);
  const full = await backup(d, "bench-full.qcow2", "full");
  process.stderr.write(`rewriting ${changedMiB} MiB (5%) spread over the disk\n`);
  const step = Math.floor(diskMiB / changedMiB);
  await shellRun(d, VM, `i=0; while [ $i -lt ${changedMiB} ]; do dd if=/dev/urandom of=/dev/vda bs=1M seek=$((i*${step})) count=1 conv=fsync 2>/dev/null; i=$((i+1)); done; echo C$((5+5))`, /C10/, 30 * 60_000);
  const inc = await backup(d, "bench-inc.qcow2", "incremental");
  if (inc.mode !== "incremental") throw new Error(`the second backup was ${inc.mode}`);
  // Both copies are sparse qcow2 images: an incremental one holding a fifth of the full one read far more than changed.
  if (inc.bytes > full.bytes / 5) throw new Error(`the incremental image holds ${inc.bytes} bytes, the full one ${full.bytes}`);
  const row = (name: string, r: { ms: number; bytes: number }) => `| ${name} | ${(r.bytes / 1024 / 1024).toFixed(1)} | ${(r.ms / 1000).toFixed(2)} |`;
  process.stdout.write(
    [
      `backup of a ${diskMiB} MiB disk, ${changedMiB} MiB (5%) changed between the two (TCG guest, ${smoke ? "smoke" : "full"} run)`,
      "",
      "| backup | MiB in its image | seconds |",
      "| --- | --- | --- |",
      row("full", full),
      row("incremental", inc),
      "",
    ].join("\n"),
  );
});

