// What the migration tests share: a pool both test hosts use, holding the test
// guest's kernel and initrd, and waiting on a job (a migration's, a backup's).
import { chmod, copyFile, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { JobView } from "../../src/jobs/job-registry.js";
import type { TestDaemon } from "./daemon.js";
import { ensureGuest } from "./guest.js";

/** A temp directory for `--pool images=DIR` on two daemons, with vmlinuz and initrd.img; removed at teardown. */
export async function sharedGuestPool(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-pool-"));
  // mkdtemp makes it 0700; the hosts' unprivileged qemus must pass through it.
  await chmod(dir, 0o755);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const guest = await ensureGuest();
  await copyFile(guest.kernel, path.join(dir, "vmlinuz"));
  await copyFile(guest.initrd, path.join(dir, "initrd.img"));
  return dir;
}

/** Polls the job until `ok` holds for it. */
export async function waitJob(d: TestDaemon, id: string, ok: (j: JobView) => boolean, timeoutMs = 30_000): Promise<JobView> {
  const until = Date.now() + timeoutMs;
  let j: JobView | undefined;
  while (Date.now() < until) {
    j = await d.api.json<JobView>("GET", `/v1/jobs/${id}`);
    if (ok(j)) return j;
    await sleep(100);
  }
  throw new Error(`job ${id}: condition not met in ${timeoutMs} ms; last ${JSON.stringify(j)}`);
}

/** Starts a migration and waits for its job to end. */
export async function migrate(d: TestDaemon, name: string, body: Record<string, unknown>): Promise<JobView> {
  const job = await d.api.json<JobView>("POST", `/v1/vms/${name}/migrate`, body);
  return waitJob(d, job.id, (j) => j.state !== "running", 120_000);
}

/**
 * Daemons started side by side: once every start has settled, so a daemon that
 * comes up after another failed is still there for its teardown to stop.
 */
export async function allStarted<T extends readonly unknown[] | []>(starts: T): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const settled = await Promise.allSettled(starts as readonly unknown[]);
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as { -readonly [K in keyof T]: Awaited<T[K]> };
}
