// Re-adoption after a crash of the daemon: 20 running VMs, the daemon SIGKILLed,
// a new daemon started on the same state. Timed from spawning the new daemon to
// the API reporting every VM with its live state read from qemu (`running`, or
// `paused` with --paused: each guest is paused once booted, so that 100 of them
// fit on a 2-core machine and cost the daemon the same adoption work).
// Printed: median, p90, min, max over --runs restarts, and the daemon's own
// figure for adoption (from its "VMs adopted" log line).
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureGuest } from "./guest-files.js";
import { formatTable } from "./latency-stats.js";
import { defineGuests, pauseGuests, readoptionRounds, startGuests, waitGuestsReady } from "./readoption-rounds.js";
import { BenchRun, numberArg, smokeMode } from "./bench-run.js";
import { BenchDaemon, daemonEntry } from "./vmhostd-daemon.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const mainJs = daemonEntry(repoRoot);

const bench = new BenchRun("readoption");
/** With --paused, guests are booted this many at a time, then paused. */
const PAUSED_BATCH = 5;

async function main(): Promise<void> {
  // Smoke: one restart with 2 paused VMs (bench/scale's smoke re-adopts running ones).
  const smoke = smokeMode();
  const runs = smoke ? 1 : numberArg("runs", 7);
  const count = smoke ? 2 : numberArg("vms", 20);
  const paused = smoke || process.argv.includes("--paused");
  const guest = ensureGuest(repoRoot);
  let daemon = await BenchDaemon.launch(mainJs);
  const names = Array.from({ length: count }, (_, i) => `ra${String(i).padStart(3, "0")}`);
  const pids: number[] = [];
  // The daemon running at the end (each restart replaces it) stops the VMs.
  bench.defer(() => daemon.shutdown(names));
  await daemon.waitReady();
  await defineGuests(daemon, guest, names);
  if (paused) {
    // A few at a time: booting under TCG is what the CPUs cannot do for 100 at once.
    for (let i = 0; i < names.length; i += PAUSED_BATCH) {
      const batch = names.slice(i, i + PAUSED_BATCH);
      pids.push(...(await startGuests(daemon, batch)));
      await waitGuestsReady(daemon, batch, 180_000);
      await pauseGuests(daemon, batch);
      process.stderr.write(`${i + batch.length}/${names.length} started and paused\n`);
    }
  } else {
    pids.push(...(await startGuests(daemon, names)));
    await waitGuestsReady(daemon, names, 180_000);
  }
  const state = paused ? "paused" : "running";
  const rounds = await readoptionRounds(daemon, mainJs, pids, { restarts: runs, vms: count, running: count, state });
  daemon = rounds.daemon;
  const { wall, own } = rounds;
  console.log(`re-adoption after SIGKILL: ${count} ${state} VMs (TCG guests), ${runs} restarts`);
  console.log(
    formatTable([
      { label: `spawn daemon -> all VMs ${state} via API`, samples: wall },
      { label: "daemon's own: start-up to all adopted", samples: own },
    ]),
  );
}

await bench.run(main);
