// One daemon at the scale of a busy host: 200 VMs defined, 20 of them running
// tiny guests. Prints the latency of the read paths an orchestrator polls
// (`GET /v1/vms`, `GET /v1/vms/{name}`, `GET /metrics`), the daemon's resident
// memory at each stage, and re-adoption after SIGKILL with 20 VMs running.
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { ensureGuest } from "./guest-files.js";
import { formatTable, summarize } from "./latency-stats.js";
import { defineGuests, readoptionRounds, startGuests, waitGuestsReady } from "./readoption-rounds.js";
import { BenchRun, numberArg, smokeMode } from "./bench-run.js";
import { pct, sampleGets } from "./timed-gets.js";
import { BenchDaemon, daemonEntry } from "./vmhostd-daemon.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const mainJs = daemonEntry(repoRoot);

const bench = new BenchRun("scale");

async function settledRssMiB(daemon: BenchDaemon): Promise<number> {
  await sleep(1000);
  return (await daemon.rssKiB()) / 1024;
}

async function main(): Promise<void> {
  // Smoke: 5 defined, 2 running, 20 requests per row, one restart.
  const smoke = smokeMode();
  const defined = smoke ? 5 : numberArg("defined", 200);
  const running = smoke ? 2 : numberArg("running", 20);
  const requests = smoke ? 20 : numberArg("requests", 1000);
  const restarts = smoke ? 1 : numberArg("restarts", 5);
  const guest = ensureGuest(repoRoot);
  let daemon = await BenchDaemon.launch(mainJs);
  const names = Array.from({ length: defined }, (_, i) => `sc${String(i).padStart(3, "0")}`);
  const runningNames = names.slice(0, running);
  const pids: number[] = [];
  const rss: { label: string; mib: number }[] = [];
  // The daemon running at the end (each restart replaces it) stops the VMs.
  bench.defer(() => daemon.shutdown(runningNames));
  await daemon.waitReady();
  rss.push({ label: "idle, no VMs", mib: await settledRssMiB(daemon) });
  await defineGuests(daemon, guest, names, { disks: [{ name: "root", sizeGiB: 1 }] });
  rss.push({ label: `${defined} defined, none running`, mib: await settledRssMiB(daemon) });
  pids.push(...(await startGuests(daemon, runningNames)));
  await waitGuestsReady(daemon, runningNames, 240_000);
  await sleep(2000);
  rss.push({ label: `${defined} defined, ${running} running`, mib: await settledRssMiB(daemon) });

  let next = 0;
  const oneVm = (): string => `/v1/vms/${names[next++ % names.length]}`;
  const runningVm = (): string => `/v1/vms/${runningNames[next++ % runningNames.length]}`;
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const rows = [
    { label: "GET /v1/vms (new connection)", samples: await sampleGets(daemon.socket, () => "/v1/vms", requests, false) },
    { label: "GET /v1/vms/{name} (new connection)", samples: await sampleGets(daemon.socket, oneVm, requests, false) },
    ...(running > 0 ? [{ label: "GET /v1/vms/{running} (new connection)", samples: await sampleGets(daemon.socket, runningVm, requests, false) }] : []),
    { label: "GET /v1/vms (keep-alive)", samples: await sampleGets(daemon.socket, () => "/v1/vms", requests, keepAlive) },
    { label: "GET /v1/vms/{name} (keep-alive)", samples: await sampleGets(daemon.socket, oneVm, requests, keepAlive) },
    { label: "GET /metrics (new connection)", samples: await sampleGets(daemon.socket, () => "/metrics", Math.ceil(requests / 20), false) },
  ];
  keepAlive.destroy();
  rss.push({ label: "after the GET loops", mib: await settledRssMiB(daemon) });

  const rounds = await readoptionRounds(daemon, mainJs, pids, { restarts, vms: defined, running });
  daemon = rounds.daemon;
  const { wall, own } = rounds;
  rss.push({ label: "after re-adoption", mib: await settledRssMiB(daemon) });

  console.log(`scale: ${defined} VMs defined, ${running} running (TCG guests, 96 MiB), ${requests} requests per GET row`);
  console.log(formatTable(rows));
  console.log("");
  console.log("p50 / p99 (ms)");
  for (const r of rows) console.log(`  ${r.label.padEnd(40)} ${pct(r.samples, 50).toFixed(2).padStart(7)} ${pct(r.samples, 99).toFixed(2).padStart(7)}`);
  console.log("");
  console.log(`re-adoption after SIGKILL, ${restarts} restarts`);
  console.log(
    formatTable([
      { label: "spawn daemon -> all VMs running via API", samples: wall },
      { label: "daemon's own: start-up to all adopted", samples: own },
    ]),
  );
  console.log("");
  const budget = (vms: number): number => 60 + 0.5 * vms;
  console.log("daemon RSS (MiB)   [goal 60 + 0.5 per VM]");
  for (const r of rss) console.log(`  ${r.label.padEnd(40)} ${r.mib.toFixed(1).padStart(7)}`);
  console.log(`  goal with ${defined} VMs: ${budget(defined).toFixed(1)}; counting only the ${running} running: ${budget(running).toFixed(1)}`);
  const s = summarize(wall);
  if (s) console.log(`re-adoption median ${s.median.toFixed(0)} ms (goal < 1000 ms)`);
}

await bench.run(main);
