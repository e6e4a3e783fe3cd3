// A disk backup run as a job to its end, and random writes from inside the guest
// for a backup to find: the backup, restore and migration tests share these.
import { setTimeout as sleep } from "node:timers/promises";
import type { TestDaemon } from "./daemon.js";
import { shellRun } from "./guest-shell.js";

/** What a finished backup job reports. */
export interface BackupResult {
  backupId: string;
  mode: string;
  since?: string;
  fullBecause?: string;
  bytes: number;
}

/** Backs up the VM's disk `data` into `target` and waits for the job to succeed (≤ 60 s); any other end throws. */
export async function backupData(d: TestDaemon, vm: string, target: string, body: Record<string, unknown> = {}): Promise<BackupResult> {
  const job = await d.api.json<{ id: string }>("POST", `/v1/vms/${vm}/disks/data/backup`, { target, ...body });
  for (let i = 0; i < 600; i++) {
    const j = await d.api.json<{ state: string; result?: BackupResult; error?: unknown }>("GET", `/v1/jobs/${job.id}`);
    if (j.state === "succeeded") return j.result!;
    if (j.state !== "running") throw new Error(`backup ${target} ${j.state}: ${JSON.stringify(j.error)}`);
    await sleep(100);
  }
  throw new Error(`backup ${target} did not end`);
}

/** Random data over `mib` MiB of the guest's disk (/dev/vda) from `atMiB` on, synced, written by the guest itself. */
export async function scribble(d: TestDaemon, vm: string, atMiB: number, mib: number): Promise<void> {
  const n = Math.floor(Math.random() * 1e9);
  await shellRun(d, vm, `dd if=/dev/urandom of=/dev/vda bs=1M seek=${atMiB} count=${mib} conv=fsync 2>/dev/null && echo S$((${n}+0))`, new RegExp(`S${n}\\b`), 60_000);
}
