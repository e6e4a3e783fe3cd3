// vmctl migrate: starts a live migration and follows its job with a progress
// bar on the terminal (a line per phase when the output is not a terminal), then
// prints the final figures. Exit status 1 if the migration did not complete.
import { setTimeout as sleep } from "node:timers/promises";
import type { ApiClient } from "./api-client.js";
import type { JobJson } from "./vm-format.js";


export interface MigrateFlags {
  storage: string;
  maxDowntime?: number;
  bandwidth?: number;
  autoConverge?: boolean;
  postcopy?: boolean;
  wait: boolean;
}

const MiB = 1024 * 1024;
const BAR = 30;

export async function migrateCommand(api: ApiClient, name: string, destination: string, f: MigrateFlags, json: boolean): Promise<number> {
  const job = await api.json<JobJson>("POST", `/v1/vms/${encodeURIComponent(name)}/migrate`, {
    destination,
    storage: f.storage,
    ...(f.maxDowntime !== undefined ? { maxDowntimeMs: f.maxDowntime } : {}),
    ...(f.bandwidth !== undefined ? { bandwidthMiBps: f.bandwidth } : {}),
    ...(f.autoConverge ? { autoConverge: true } : {}),
    ...(f.postcopy ? { postcopy: true } : {}),
  });
  if (!f.wait) {
    process.stdout.write(json ? JSON.stringify(job) + "\n" : `migration job ${job.id} started\n`);
    return 0;
  }
  const tty = process.stderr.isTTY;
  let lastPhase = "";
  let end: JobJson;
  for (;;) {
    end = await api.json<JobJson>("GET", `/v1/jobs/${job.id}`);
    if (tty) process.stderr.write(`\r${progressLine(end)}\x1b[K`);
    else if (end.phase !== lastPhase) process.stderr.write(`${end.phase}\n`);
    lastPhase = end.phase;
    if (end.state !== "running") break;
    await sleep(250);
  }
  if (tty) process.stderr.write("\n");
  if (json) process.stdout.write(JSON.stringify(end, null, 2) + "\n");
  else if (end.state === "succeeded") {
    const r = end.result ?? {};
    process.stdout.write(`${name}: migrated to ${destination} in ${r.totalTimeMs} ms (downtime ${r.downtimeMs ?? "?"} ms)\n`);
  } else {
    process.stdout.write(`${name}: migration ${end.state}: ${end.error?.detail ?? ""} (${end.error?.code ?? ""}); the VM runs on the source\n`);
  }
  return end.state === "succeeded" ? 0 : 1;
}

function progressLine(j: JobJson): string {
  const p = j.progress;
  const pct = Number(p.percent ?? (p.diskBytesTotal ? (100 * Number(p.diskBytesCopied)) / Number(p.diskBytesTotal) : 0));
  const filled = Math.round((BAR * Math.min(100, pct)) / 100);
  const parts = [`[${"#".repeat(filled)}${"-".repeat(BAR - filled)}] ${pct.toFixed(0).padStart(3)}% ${j.phase}`];
  if (p.bytesTotal) parts.push(`${mib(p.bytesTransferred)} sent, ${mib(p.bytesRemaining)} left`);
  if (p.diskBytesTotal && j.phase === "copying-disks") parts.push(`disks ${mib(p.diskBytesCopied)}/${mib(p.diskBytesTotal)}`);
  if (p.dirtyPagesRate) parts.push(`dirty ${p.dirtyPagesRate} pages/s`);
  if (p.expectedDowntimeMs) parts.push(`expected downtime ${p.expectedDowntimeMs} ms`);
  return parts.join(", ");
}

function mib(v: unknown): string {
  return `${(Number(v ?? 0) / MiB).toFixed(0)} MiB`;
}
