// Re-adoption after a crash of the daemon: 20 running VMs, the daemon SIGKILLed,
// a new daemon started on the same state. Timed from spawning the new daemon to
// the API reporting every VM with its live state read from qemu (`running`).
// Printed: median, p90, min, max over --runs restarts, and the daemon's own
// figure for adoption (from its "VMs adopted" log line).
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ensureGuest } from "./guest-files.js";
import { formatTable } from "./latency-stats.js";
import { defineGuests, readoptionRounds, startGuests, waitGuestsReady } from "./readoption-rounds.js";
import { BenchDaemon } from "./vmhostd-daemon.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const mainJs = path.join(repoRoot, "dist/src/main.js");

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const runs = arg("runs", 7);
  const count = arg("vms", 20);
  const guest = ensureGuest(repoRoot);
  let daemon = await BenchDaemon.launch(mainJs);
  const names = Array.from({ length: count }, (_, i) => `ra${String(i).padStart(2, "0")}`);
  const pids: number[] = [];
  try {
    await daemon.waitReady();
    await defineGuests(daemon, guest, names);
    pids.push(...(await startGuests(daemon, names)));
    await waitGuestsReady(daemon, names, 180_000);
    const rounds = await readoptionRounds(daemon, mainJs, pids, { restarts: runs, vms: count, running: count });
    daemon = rounds.daemon;
    const { wall, own } = rounds;
    console.log(`re-adoption after SIGKILL: ${count} running VMs (TCG guests), ${runs} restarts`);
    console.log(
      formatTable([
        { label: "spawn daemon -> all VMs running via API", samples: wall },
        { label: "daemon's own: start-up to all adopted", samples: own },
      ]),
    );
  } finally {
    await daemon.shutdown(names);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
