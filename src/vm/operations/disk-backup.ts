// A live backup of one disk of a running VM to a new image in a pool, as a job:
// make the target (exclusively, its directory resolved inside a pool at that
// moment, formatted by qemu-img through the daemon's descriptor, in the format
// asked for) → open it in qemu (blockdev-add, backing null: a backup depends on
// nothing) → blockdev-backup
// with sync full, which copies the disk as it was when the job began while the
// guest goes on writing (qemu copies a block out before the guest overwrites it)
// → follow query-block-jobs for progress until BLOCK_JOB_COMPLETED or
// BLOCK_JOB_CANCELLED → close the target node. A backup that does not complete
// (cancelled, failed, qemu gone) leaves no file behind: a partial image would look
// like a good one. It holds no operation lock, so the VM can still be stopped;
// that ends the backup as failed.
import { setTimeout as sleep } from "node:timers/promises";
import { DeviceNotFound, StorageFailed, ValidationFailed, VmBusy, VmStateConflict, VmhError } from "../../errors.js";
import type { Job, JobRegistry } from "../../jobs/job-registry.js";
import type { QmpEvent } from "../../qmp/commands.js";
import { createInPool, removeIfSame } from "../../storage/pool-files.js";
import type { DiskDefinition } from "../../definition/vm-definition.js";
import type { HostContext } from "../host-context.js";
import type { QemuSession } from "../qemu-session.js";
import type { Vm } from "../vm.js";
import type { ActionOf } from "../../definition/vm-action.js";
import type { PreparedJob } from "./job-actions.js";
import { activeNode } from "../snapshots/block-graph.js";
import { activeImage, readSnapshotRecord } from "../snapshots/snapshot-record.js";
import { markPending, planCheckpoint, recordBackup, startBackup, type Checkpoint } from "../backups/backup-checkpoints.js";
import { BACKUP_BITMAP } from "../backups/backup-record.js";
import path from "node:path";

const POLL_MS = 200;
const QMP_TIMEOUT_MS = 30_000;
/** After the job left query-block-jobs, how long its end event may still be on its way. */
const EVENT_GRACE_MS = 5_000;

export interface BackupRequest {
  target: string;
  format: "qcow2" | "raw";
  /** Bandwidth limit, so a backup does not starve the guest's own I/O. */
  speedMiBps?: number;
}

type Outcome = { event: "BLOCK_JOB_COMPLETED" | "BLOCK_JOB_CANCELLED"; len?: number; error?: string };

export class DiskBackups {
  constructor(
    private readonly host: HostContext,
    private readonly jobs: JobRegistry,
  ) {}

  /** Checks the request and reserves the target file; the copy then runs as the job. */
  async prepare(vm: Vm, action: ActionOf<"backup">): Promise<PreparedJob> {
    const { name } = vm;
    const { disk: diskName, ...req } = action;
    const disk = vm.definition.disks.find((d) => d.name === diskName);
    if (!disk) throw new DeviceNotFound(`VM "${name}" has no disk "${diskName}"`, { vm: name, disk: diskName });
    const session = vm.session;
    if (!session?.connected) throw new VmStateConflict(name, vm.settledState(), "back up a disk of");
    if (vm.job?.state === "running") throw new VmBusy(name, vm.job.kind);
    // Not under the lock (a backup may run for hours while the VM is stopped or
    // migrated away), but never begun while another operation is changing the VM.
    const held = vm.lock.current;
    if (held) throw new VmBusy(name, held.name);
    const target = (await this.host.pools.resolveNewFile(req.target, "target")).absolute;
    // A qcow2 disk carries the dirty bitmap; full or incremental is decided by what it and the record show.
    const asked = { mode: req.mode ?? "full", ...(req.since !== undefined ? { since: req.since } : {}) };
    const cp = disk.format === "qcow2" ? await planCheckpoint(vm, session, diskName, asked, (p) => this.host.pools.resolveFile(p, "since").then((r) => r.absolute, () => undefined)) : undefined;
    const reason = cp?.reason ?? (asked.mode === "incremental" && !cp ? "a raw disk has no dirty bitmap" : undefined);
    if (cp?.mode === "incremental" && req.format !== "qcow2") {
      throw new ValidationFailed("format: an incremental backup is a qcow2 overlay of the previous one", [{ field: "format", message: "must be qcow2 for an incremental backup" }]);
    }
    // Made exclusively here, so two requests for one target cannot both pass the check;
    // formatted through the descriptor, so the directory is the one just checked.
    const made = await createInPool(this.host.pools, target, "target");
    try {
      const size = await this.sourceSize(vm, disk);
      if (cp?.mode === "incremental") {
        // Only the changed blocks are written; the rest reads through to the previous backup, named relative to this one.
        await this.host.qemuImg.createOverlayOnFd(made.handle.fd, target, path.relative(path.dirname(target), cp.parent!.file), size);
      } else await this.host.qemuImg.createOnFd(made.handle.fd, target, req.format, size);
    } catch (err) {
      await made.handle.close();
      await removeIfSame(made.path, made);
      throw err;
    }
    await made.handle.close();
    const job = this.jobs.create("backup", name);
    job.update({ disk: diskName, target: req.target, mode: cp?.mode ?? "full", ...(reason ? { fullBecause: reason } : {}) });
    return {
      job,
      run: () => this.run(vm, session, job, { format: req.format, speedMiBps: req.speedMiBps, disk: diskName, target: made.path, poolPath: req.target, cp, reason }),
      failed: async (err: unknown) => {
        await removeIfSame(made.path, made).catch(() => {});
        if (cp) await recordBackup(vm, undefined, diskName).catch(() => {});
        const e = err instanceof VmhError ? err : new StorageFailed((err as Error).message);
        const state = job.signal.aborted ? "cancelled" : "failed";
        job.finish(state, undefined, { code: e.code, detail: e.message });
        vm.log.warn({ job: job.id, err: e.message }, `backup ${state}; the partial target was removed`);
      },
    };
  }

  /**
   * The disk's size, read with its declared format. What is in it is the guest's
   * writing, so qemu-img reads it as the VM's own uid, not as root.
   */
  private async sourceSize(vm: Vm, disk: DiskDefinition): Promise<number> {
    const file = disk.image ? (await this.host.pools.resolveFile(disk.image, "disk")).absolute : activeImage(await readSnapshotRecord(vm.paths), vm.paths, disk);
    const as = await this.host.qemuUsers.identityFor(vm.name);
    return (await this.host.qemuImg.info(file, disk.format, as)).virtualSize;
  }

  private async run(
    vm: Vm,
    session: QemuSession,
    job: Job,
    b: BackupRequest & { disk: string; target: string; poolPath: string; cp: Checkpoint | undefined; reason: string | undefined },
  ): Promise<void> {
    const node = `bk-${b.disk}`;
    const jobId = `backup-${b.disk}`;
    job.setPhase("creating-target");
    // A backup depends on nothing: no backing file is looked up, not even the target's own.
    const backing = b.format === "qcow2" ? { backing: null } : {};
    await session.execute("blockdev-add", { driver: b.format, "node-name": node, file: { driver: "file", filename: b.target }, ...backing }, QMP_TIMEOUT_MS);
    const stopListening = new AbortController();
    try {
      let outcome: Outcome | undefined;
      session.onEvent((e: QmpEvent) => {
        if (e.data?.device !== jobId) return;
        if (e.event === "BLOCK_JOB_COMPLETED" || e.event === "BLOCK_JOB_CANCELLED") {
          // The event carries the job's length: a backup done before the first poll still reports its size.
          const len = typeof e.data.len === "number" ? { len: e.data.len } : {};
          outcome = { event: e.event, ...len, ...(typeof e.data.error === "string" ? { error: e.data.error } : {}) };
        }
      }, stopListening.signal);
      job.setPhase("copying");
      const copy = { "job-id": jobId, device: (await activeNode(session, b.disk)).node, target: node, ...(b.speedMiBps ? { speed: b.speedMiBps * 1024 * 1024 } : {}) };
      if (b.cp) {
        await markPending(vm, b.disk, job.id);
        await startBackup(session, b.cp, copy);
      } else await session.execute("blockdev-backup", { ...copy, sync: "full" }, QMP_TIMEOUT_MS);
      let cancelSent = false;
      let goneAt: number | undefined;
      while (!outcome) {
        if (job.signal.aborted && !cancelSent) {
          cancelSent = true;
          job.setPhase("cancelling");
          await session.execute("block-job-cancel", { device: jobId, force: true }, QMP_TIMEOUT_MS).catch(() => {});
        }
        const info = (await session.execute("query-block-jobs", {}, QMP_TIMEOUT_MS)).find((j) => j.device === jobId);
        if (info) {
          job.update({ bytesCopied: info.offset, bytesTotal: info.len, percent: info.len ? Math.floor((100 * info.offset) / info.len) : 0 });
        } else {
          goneAt ??= Date.now();
          if (Date.now() - goneAt > EVENT_GRACE_MS) throw new StorageFailed("the backup job ended without saying how");
        }
        if (!outcome) await sleep(POLL_MS);
      }
      if (outcome.event === "BLOCK_JOB_CANCELLED") throw new StorageFailed("cancelled by the operator");
      if (outcome.error) throw new StorageFailed(`backup of ${b.disk} failed: ${outcome.error}`);
      if (outcome.len !== undefined) job.update({ bytesTotal: outcome.len });
    } finally {
      stopListening.abort();
      // Closes the target file; after a failure qemu may already be gone.
      await session.execute("blockdev-del", { "node-name": node }, QMP_TIMEOUT_MS).catch(() => {});
    }
    const bytes = Number(job.progress.bytesTotal ?? 0);
    job.update({ bytesCopied: bytes, bytesTotal: bytes, percent: 100 });
    job.setPhase("completed");
    const mode = b.cp?.mode ?? "full";
    if (b.cp) {
      const checkpoint = { image: b.cp.image, bitmap: BACKUP_BITMAP };
      const entry = { id: job.id, disk: b.disk, mode, target: b.poolPath, file: b.target, createdAt: job.startedAt, bytes, checkpoint, ...(b.cp.parent ? { parent: b.cp.parent.id } : {}) };
      await recordBackup(vm, entry, b.disk);
    }
    job.finish("succeeded", { disk: b.disk, target: b.target, format: b.format, bytes, backupId: job.id, mode, ...(b.cp?.parent ? { since: b.cp.parent.id } : {}), ...(b.reason ? { fullBecause: b.reason } : {}) });
    vm.log.info({ job: job.id, disk: b.disk, target: b.target }, "backup completed");
    vm.publish("vm.disk-backed-up", { disk: b.disk, target: b.target });
  }
}
