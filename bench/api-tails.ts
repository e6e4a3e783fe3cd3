// The read paths an orchestrator polls, at a busy host's scale: `GET /v1/vms/{name}`
// of a running VM and `GET /metrics`, with 200 VMs defined and 20 of them running
// the test guest (each with a disk and a disk limit, so that a view has limits to
// read back). With `--against <vmhostd.js>` (another build's bundle, e.g. a copy of
// dist/ made before a change) the two daemons take turns on the same state and the
// same running guests: each turn spawns one of them, which adopts the guests, is
// measured and SIGKILLed; the qemus never stop. Side by side on the same guests and
// within minutes of each other, the comparison suffers less from a shared machine.
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { ensureGuest } from "./guest-files.js";
import { formatTable, type Row } from "./latency-stats.js";
import { defineGuests, startGuests, waitGuestsReady } from "./readoption-rounds.js";
import { BenchRun, numberArg, smokeMode } from "./bench-run.js";
import { pct, sampleGets } from "./timed-gets.js";
import { BenchDaemon, daemonEntry } from "./vmhostd-daemon.js";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const bench = new BenchRun("api-tails");

/** Polls until the daemon shows every running VM `running` (its state read from qemu). */
async function waitAdopted(daemon: BenchDaemon, running: string[], timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await daemon.request("GET", "/v1/vms");
    const vms = (r.body as { vms: { name: string; state: string }[] }).vms;
    if (running.every((n) => vms.find((v) => v.name === n)?.state === "running")) return;
    if (Date.now() > until) throw new Error(`not every VM shown running within ${timeoutMs} ms`);
    await sleep(50);
  }
}

interface Side {
  label: string;
  entry: string;
  getKeepAlive: number[];
  getFresh: number[];
  metrics: number[];
  rssMiB: number[];
}

async function main(): Promise<void> {
  const smoke = smokeMode();
  const defined = smoke ? 5 : numberArg("defined", 200);
  const running = smoke ? 2 : numberArg("running", 20);
  const requests = smoke ? 20 : numberArg("requests", 1000);
  const scrapes = smoke ? 5 : numberArg("scrapes", 100);
  const turns = smoke ? 1 : numberArg("turns", 2);
  const againstAt = process.argv.indexOf("--against");
  const against = againstAt > 0 ? path.resolve(process.argv[againstAt + 1] ?? "") : undefined;
  const sides: Side[] = [
    { label: "this build", entry: daemonEntry(repoRoot), getKeepAlive: [], getFresh: [], metrics: [], rssMiB: [] },
    ...(against ? [{ label: "against", entry: against, getKeepAlive: [], getFresh: [], metrics: [], rssMiB: [] }] : []),
  ];
  const guest = ensureGuest(repoRoot);
  const names = Array.from({ length: defined }, (_, i) => `at${String(i).padStart(3, "0")}`);
  const runningNames = names.slice(0, running);
  let daemon = await BenchDaemon.launch(sides[0]!.entry);
  // The daemon running at the end (each turn replaces it) stops the VMs.
  bench.defer(() => daemon.shutdown(runningNames));
  await daemon.waitReady();
  await defineGuests(daemon, guest, runningNames, { disks: [{ name: "root", sizeGiB: 1 }], limits: { disk: { iops: 100_000 } } });
  await defineGuests(daemon, guest, names.slice(running), { disks: [{ name: "root", sizeGiB: 1 }] });
  const pids = await startGuests(daemon, runningNames);
  process.stderr.write(`api-tails: ${running} guests booting\n`);
  await waitGuestsReady(daemon, runningNames, 240_000);

  for (let turn = 0; turn < turns; turn++) {
    for (const side of sides) {
      if (turn > 0 || side !== sides[0]) {
        await daemon.kill();
        daemon = await BenchDaemon.launch(side.entry, daemon.root);
        for (const pid of pids) daemon.rememberQemu(pid);
        await daemon.waitReady();
      }
      await waitAdopted(daemon, runningNames, 60_000);
      await sleep(1000);
      let next = 0;
      const runningVm = (): string => `/v1/vms/${runningNames[next++ % runningNames.length]}`;
      const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
      side.getKeepAlive.push(...(await sampleGets(daemon.socket, runningVm, requests, keepAlive)));
      keepAlive.destroy();
      side.getFresh.push(...(await sampleGets(daemon.socket, runningVm, requests, false)));
      side.metrics.push(...(await sampleGets(daemon.socket, () => "/metrics", scrapes, false)));
      side.rssMiB.push((await daemon.rssKiB()) / 1024);
      process.stderr.write(`api-tails: turn ${turn + 1}/${turns}, ${side.label} measured\n`);
    }
  }

  console.log(`api-tails: ${defined} VMs defined, ${running} running (TCG guests, 96 MiB), ${turns} turn(s) per build, ${requests} GETs and ${scrapes} scrapes per turn`);
  for (const s of sides) console.log(`  ${s.label}: ${s.entry}`);
  const rows: Row[] = sides.flatMap((s) => [
    { label: `${s.label}: GET /v1/vms/{running}, keep-alive`, samples: s.getKeepAlive },
    { label: `${s.label}: GET /v1/vms/{running}, new connection`, samples: s.getFresh },
    { label: `${s.label}: GET /metrics, new connection`, samples: s.metrics },
  ]);
  console.log(formatTable(rows));
  console.log("");
  console.log("p50 / p99 (ms)    [goals: GET p99 <= 5 ms, /metrics <= 50 ms]");
  for (const r of rows) console.log(`  ${r.label.padEnd(52)} ${pct(r.samples, 50).toFixed(2).padStart(7)} ${pct(r.samples, 99).toFixed(2).padStart(7)}`);
  for (const s of sides) console.log(`  ${s.label}: RSS after each turn ${s.rssMiB.map((m) => m.toFixed(1)).join(", ")} MiB`);
}

await bench.run(main);
