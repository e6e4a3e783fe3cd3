// Storage "copy": every disk is mirrored to the destination's NBD export of it.
// qemu's order (docs/interop/live-block-operations): mirror each disk until it is
// in sync (BLOCK_JOB_READY), migrate RAM with the mirrors still running (in
// write-blocking mode every guest write reaches both sides), and only once the
// migration has completed, with the guest paused, complete the mirrors with
// block-job-cancel, which in the ready state finishes the copy without pivoting.
// Every disk is mirrored or the migration fails: none is ever skipped.
import { setTimeout as sleep } from "node:timers/promises";
import { MigrationFailed } from "../errors.js";
import type { QemuSession } from "../vm/qemu-session.js";
import { activeNode } from "../vm/snapshots/block-graph.js";

const POLL_MS = 200;

export class DiskMirrors {
  private started: string[] = [];

  constructor(
    private readonly session: QemuSession,
    private readonly disks: string[],
    /** Disks whose lower layers are on the destination already: only their top is copied. */
    private readonly topOnly: ReadonlySet<string> = new Set(),
  ) {}

  async start(
    nbd: { host: string; port: number; exports: Record<string, string> },
    progress: (p: Record<string, number>) => void,
    signal: AbortSignal,
    keepAlive: () => Promise<void>,
    /** The client credentials object, and the name the destination's certificate must carry. */
    tls?: { creds: string; hostname: string },
  ): Promise<void> {
    for (const disk of this.disks) {
      const exportName = nbd.exports[disk];
      if (!exportName) throw new MigrationFailed(`the destination exports no disk "${disk}"`);
      await this.session.execute("blockdev-add", {
        driver: "nbd",
        "node-name": `mig-${disk}`,
        server: { type: "inet", host: nbd.host, port: String(nbd.port) },
        export: exportName,
        ...(tls ? { "tls-creds": tls.creds, "tls-hostname": tls.hostname } : {}),
      });
      this.started.push(disk);
      await this.session.execute("blockdev-mirror", {
        "job-id": `mirror-${disk}`,
        // The disk's root (qemu wants one): its throttle filter, so the copy is counted in the VM's disk budget.
        device: (await activeNode(this.session, disk)).root,
        target: `mig-${disk}`,
        // sync top: only what the top layer holds; the destination's top reads the rest from the copied layers.
        sync: this.topOnly.has(disk) ? "top" : "full",
        "copy-mode": "write-blocking",
      });
    }
    for (;;) {
      if (signal.aborted) throw new MigrationFailed("cancelled by the operator");
      const jobs = (await this.session.execute("query-block-jobs")).filter((j) => j.device.startsWith("mirror-"));
      const failed = jobs.find((j) => j.error);
      if (failed) throw new MigrationFailed(`copy of ${failed.device.slice(7)} failed: ${failed.error}`);
      if (jobs.length < this.started.length) throw new MigrationFailed("a disk copy ended before it was in sync");
      const len = jobs.reduce((a, j) => a + j.len, 0);
      const done = jobs.reduce((a, j) => a + j.offset, 0);
      progress({ diskBytesCopied: done, diskBytesTotal: len });
      if (jobs.every((j) => j.ready)) return;
      await keepAlive();
      await sleep(POLL_MS);
    }
  }

  /** With the guest paused after RAM migration: finish each copy (no pivot) and drop the NBD nodes. */
  async complete(): Promise<void> {
    for (const disk of this.started) await this.session.execute("block-job-cancel", { device: `mirror-${disk}` });
    await this.waitGone();
    await this.dropNodes();
  }

  /** Abandons the copies (any phase): the source's own disks are untouched. */
  async cancel(): Promise<void> {
    for (const disk of this.started) {
      await this.session.execute("block-job-cancel", { device: `mirror-${disk}`, force: true }).catch(() => {});
    }
    await this.waitGone().catch(() => {});
    await this.dropNodes().catch(() => {});
  }

  private async waitGone(): Promise<void> {
    for (let i = 0; i < 300; i++) {
      const jobs = (await this.session.execute("query-block-jobs")).filter((j) => j.device.startsWith("mirror-"));
      if (jobs.length === 0) return;
      await sleep(100);
    }
    throw new MigrationFailed("disk copies did not finish");
  }

  private async dropNodes(): Promise<void> {
    for (const disk of this.started) await this.session.execute("blockdev-del", { "node-name": `mig-${disk}` }).catch(() => {});
    this.started = [];
  }
}
