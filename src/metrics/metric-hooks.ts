// The daemon's own Prometheus figures and the one registry both listeners serve:
// counters and histograms fed by small hooks (HTTP, QMP, crashes, jobs, adoption)
// that any layer may call. It imports nothing of the VM layer, so the layers that
// feed it (qmp sessions, jobs, the VM) sit above it; the per-VM figures read at
// each scrape are vm-metrics.ts, at the top.
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { QmpCommandOutcome } from "../qmp/qmp-client.js";

export const registry = new Registry();

const httpDuration = new Histogram({
  name: "vmhostd_http_request_duration_seconds",
  help: "HTTP requests by method, route pattern and status code",
  labelNames: ["method", "route", "status"] as const,
  buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
  registers: [registry],
});

const qmpDuration = new Histogram({
  name: "vmhostd_qmp_command_duration_seconds",
  help: "QMP commands sent to qemu, by command and outcome (ok, error, timeout, disconnected)",
  labelNames: ["command", "outcome"] as const,
  buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 1, 5, 30],
  registers: [registry],
});

const qemuCrashes = new Counter({
  name: "vmhostd_qemu_crashes_total",
  help: "qemu runs that ended in a crash (lastExit reason crashed) seen by this daemon process",
  registers: [registry],
});

const jobs = new Counter({
  name: "vmhostd_jobs_total",
  help: "Finished jobs by kind and result (succeeded, failed, cancelled)",
  labelNames: ["kind", "result"] as const,
  registers: [registry],
});

const adoption = new Gauge({
  name: "vmhostd_adoption_duration_seconds",
  help: "Seconds from the daemon's start until every VM was adopted",
  registers: [registry],
});

export function observeHttpRequest(method: string, route: string, status: number, seconds: number): void {
  httpDuration.observe({ method, route, status: String(status) }, seconds);
}

/**
 * Command names become label values, and with `--qmp-passthrough=all` an API
 * caller chooses them: past this many distinct names the rest share one series.
 */
const MAX_QMP_COMMAND_LABELS = 256;
const qmpCommandLabels = new Set<string>();

export function observeQmpCommand(command: string, outcome: QmpCommandOutcome, seconds: number): void {
  if (!qmpCommandLabels.has(command) && qmpCommandLabels.size < MAX_QMP_COMMAND_LABELS) qmpCommandLabels.add(command);
  qmpDuration.observe({ command: qmpCommandLabels.has(command) ? command : "(other)", outcome }, seconds);
}

export function countQemuCrash(): void {
  qemuCrashes.inc();
}

export function countJobFinished(kind: string, result: string): void {
  jobs.inc({ kind, result });
}

/** Made at the first report (fleet mode only): a single host shows no fence figures rather than a 0 that reads "not armed". */
let fenceGauges: { armed: Gauge; refusals: Gauge } | undefined;

export function setFenceStatus(armed: boolean, refusals: number): void {
  fenceGauges ??= {
    armed: new Gauge({
      name: "vmhostd_fence_armed",
      help: "Fleet mode: 1 while the fence process confirms it protects every running ha VM (its qemu seen by recorded identity, the watchdog open if set); 0 otherwise",
      registers: [registry],
    }),
    refusals: new Gauge({
      name: "vmhostd_fence_refusals",
      help: "Fleet mode: what the fence process cannot see or use (a running ha VM's qemu it cannot confirm, the watchdog)",
      registers: [registry],
    }),
  };
  fenceGauges.armed.set(armed ? 1 : 0);
  fenceGauges.refusals.set(refusals);
}

export function setAdoptionDuration(seconds: number): void {
  adoption.set(seconds);
}

export const metricsContentType = registry.contentType;
