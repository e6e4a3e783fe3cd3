// GET /metrics against a real qemu: the figures come from qemu itself (CPU time
// from /proc, disk counters from query-blockstats, asked in the background every
// few seconds while scrapes come), the daemon's histograms fill as it works, and a
// hung qemu costs a scrape nothing: it is shown stale within one sampling round.
import t from "tap";
import type { VmJson } from "../../src/cli/vm-format.js";
import { defineGuestVm, startDaemon, waitForBoot, type TestDaemon } from "../helpers/daemon.js";
import { setTimeout as sleep } from "node:timers/promises";
import { QMP_SAMPLE_EVERY_MS } from "../../src/metrics/vm-sampler.js";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Exposition {
  samples: Sample[];
  help: Map<string, string>;
  type: Map<string, string>;
}

/** The Prometheus text format, as far as this test needs: `name{a="b",...} value` and `# HELP`/`# TYPE`. */
function parseExposition(text: string): Exposition {
  const out: Exposition = { samples: [], help: new Map(), type: new Map() };
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      (meta[1] === "HELP" ? out.help : out.type).set(meta[2]!, meta[3]!);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    out.samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

function value(e: Exposition, name: string, labels: Record<string, string>): number | undefined {
  return e.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

function sum(e: Exposition, name: string, labels: Record<string, string>): number {
  return e.samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

async function scrape(d: TestDaemon): Promise<{ e: Exposition; ms: number; contentType: string }> {
  const started = Date.now();
  const res = await d.api.request("GET", "/metrics", undefined, 10_000);
  const ms = Date.now() - started;
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status} ${res.body.toString()}`);
  return { e: parseExposition(res.body.toString("utf8")), ms, contentType: String(res.headers["content-type"]) };
}

/** Scrapes (every 100 ms) until `ok` holds, or fails after `timeoutMs`; `each` is told every scrape's time. */
async function scrapeUntil(d: TestDaemon, ok: (e: Exposition) => boolean, timeoutMs: number, each?: (ms: number) => void): Promise<{ e: Exposition; ms: number }> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = await scrape(d);
    each?.(s.ms);
    if (ok(s.e)) return s;
    if (Date.now() > until) throw new Error(`metrics: condition not met within ${timeoutMs} ms`);
    await sleep(100);
  }
}

t.test("metrics of a running VM come from its qemu", async (t) => {
  const d = await startDaemon();
  const frozen: number[] = [];
  t.teardown(async () => {
    for (const pid of frozen) process.kill(pid, "SIGCONT");
    await d.cleanup();
  });
  await defineGuestVm(d, "m1", { vcpus: 1, memoryMiB: 128, disks: [{ name: "data", sizeGiB: 1 }] });
  const vm = await d.api.json<VmJson>("POST", "/v1/vms/m1/start");
  const vmL = { vm: "m1" };
  const diskL = { vm: "m1", disk: "data" };

  // Before the guest's kernel has probed its disk.
  const first = await scrape(d);
  t.match(first.contentType, /^text\/plain; version=0\.0\.4/);
  t.equal(first.e.type.get("vmhostd_vm_cpu_seconds_total"), "counter");
  t.equal(first.e.type.get("vmhostd_http_request_duration_seconds"), "histogram");
  t.ok(first.e.help.get("vmhostd_vm_state"), "HELP lines are there");
  const readOps0 = value(first.e, "vmhostd_vm_disk_read_ops_total", diskL);
  t.not(readOps0, undefined, "the disk is reported under its definition's name");

  await waitForBoot(d, "m1", 1);
  // qemu's counters are served from the last background round: they lag by up to one round.
  const booted = await scrapeUntil(d, (e) => value(e, "vmhostd_vm_disk_read_ops_total", diskL)! > readOps0!, 3 * QMP_SAMPLE_EVERY_MS);
  await sleep(3000);
  const later = await scrape(d);

  t.equal(value(later.e, "vmhostd_vm_state", { vm: "m1", state: "running" }), 1, "state gauge: running");
  t.equal(value(later.e, "vmhostd_vm_state", { vm: "m1", state: "stopped" }), 0);
  t.equal(value(later.e, "vmhostd_vm_vcpus", vmL), 1);
  t.equal(value(later.e, "vmhostd_vm_memory_bytes", vmL), 128 * 2 ** 20);
  t.equal(value(later.e, "vmhostd_vm_metrics_stale", vmL), 0);

  const cpu1 = value(booted.e, "vmhostd_vm_cpu_seconds_total", vmL)!;
  const cpu2 = value(later.e, "vmhostd_vm_cpu_seconds_total", vmL)!;
  t.ok(cpu1 > 0 && cpu2 > cpu1, `qemu's CPU seconds grow (${cpu1} -> ${cpu2})`);

  // The guest reads its disk only while its kernel probes it at boot: qemu counted those reads.
  const readOps1 = value(booted.e, "vmhostd_vm_disk_read_ops_total", diskL)!;
  const readBytes1 = value(booted.e, "vmhostd_vm_disk_read_bytes_total", diskL)!;
  t.ok(readOps1 > readOps0!, `read ops grew from before boot to after (${readOps0} -> ${readOps1})`);
  t.ok(readBytes1 >= readOps1 * 512, `read bytes counted too (${readBytes1})`);
  t.ok(value(later.e, "vmhostd_vm_disk_read_bytes_total", diskL)! >= readBytes1, "a counter never goes back");
  t.not(value(later.e, "vmhostd_vm_disk_read_time_seconds_total", diskL), undefined);
  t.equal(
    later.e.samples.filter((s) => s.name.startsWith("vmhostd_vm_nic_")).length,
    0,
    "a user-mode NIC has no tap, so no NIC figures",
  );

  t.ok(
    sum(later.e, "vmhostd_http_request_duration_seconds_count", { route: "/v1/vms/:name/start", method: "POST", status: "200" }) >= 1,
    "the HTTP histogram has the start, by route pattern (/v1/vms/:name/start)",
  );
  t.ok(sum(later.e, "vmhostd_qmp_command_duration_seconds_count", { command: "query-blockstats", outcome: "ok" }) >= 2, "QMP histogram: query-blockstats");
  t.ok(sum(later.e, "vmhostd_qmp_command_duration_seconds_count", { command: "cont" }) >= 1, "QMP histogram: cont of the start");
  t.equal(later.e.samples.filter((s) => s.labels.route?.includes("m1")).length, 0, "no raw URLs as routes");
  t.ok(value(later.e, "vmhostd_adoption_duration_seconds", {})! > 0, "adoption duration set");

  // A hung qemu: every scrape answers at once; within a sampling round (and the deadline
  // of its question) the VM is marked stale, with the last figures kept.
  process.kill(vm.pid!, "SIGSTOP");
  frozen.push(vm.pid!);
  const frozenAt = Date.now();
  let slowest = 0;
  const firstStale = await scrapeUntil(d, (e) => value(e, "vmhostd_vm_metrics_stale", vmL) === 1, 2 * QMP_SAMPLE_EVERY_MS + 2000, (ms) => (slowest = Math.max(slowest, ms)));
  t.ok(slowest < 1000, `no scrape waited on the hung qemu (slowest ${slowest} ms)`);
  t.comment(`marked stale ${Date.now() - frozenAt} ms after the freeze`);
  t.equal(value(firstStale.e, "vmhostd_vm_disk_read_ops_total", diskL), value(later.e, "vmhostd_vm_disk_read_ops_total", diskL), "the last disk figures are kept");
  for (let i = 0; i < 2; i++) {
    const hung = await scrape(d);
    t.ok(hung.ms < 1000, `scrape ${i + 1} of a hung qemu takes ${hung.ms} ms`);
    t.equal(value(hung.e, "vmhostd_vm_metrics_stale", vmL), 1, "marked stale");
    t.equal(
      value(hung.e, "vmhostd_vm_disk_read_ops_total", diskL),
      value(later.e, "vmhostd_vm_disk_read_ops_total", diskL),
      "the last disk figures are kept",
    );
  }
  process.kill(vm.pid!, "SIGCONT");
  frozen.pop();
  const until = Date.now() + 10_000;
  let stale: number | undefined = 1;
  while (stale !== 0 && Date.now() < until) {
    stale = value((await scrape(d)).e, "vmhostd_vm_metrics_stale", vmL);
    await sleep(100);
  }
  t.equal(stale, 0, "fresh again once qemu answers");
});
