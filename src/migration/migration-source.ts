// The source side of a live migration, as a job under the VM's `migrate`
// operation: prepare the destination → mirror the disks to it (copy) → send RAM →
// switch over → have the destination resume the guest → drop the copy here.
// One rule holds throughout: the guest runs on exactly one host. Before RAM has
// fully arrived any failure resumes it here. After that, the source never resumes
// on a guess: it asks the destination, and keeps the guest paused until it knows.
import { endEntry } from "../vm/action-journal.js";
import { setTimeout as sleep } from "node:timers/promises";
import { MigrationFailed, SnapshotsNotMigrated, ValidationFailed, VmStateConflict, VmhError } from "../errors.js";
import { devicesChangedSinceStart } from "../vm/devices/device-hotplug.js";
import type { Job, JobRegistry } from "../jobs/job-registry.js";
import type { MigrationInfo } from "../qmp/migration-commands.js";
import { diskPath } from "../store/vm-paths.js";
import type { HostContext } from "../vm/host-context.js";
import { killQemu } from "../vm/operations/stop-vm.js";
import type { QemuSession } from "../vm/qemu-session.js";
import type { Vm } from "../vm/vm.js";
import type { VmRegistry } from "../vm/vm-registry.js";
import { definitionFiles } from "./definition-files.js";
import { deviceLayoutDifference } from "./device-layout.js";
import { DiskMirrors } from "./disk-mirrors.js";
import type { IncomingReply, MigrateRequest } from "./migration-schema.js";
import { PeerClient, PeerUnreachable } from "./peer-client.js";
import type { JournalEntry } from "../store/operation-journal.js";
import type { ActionOf } from "../definition/vm-action.js";
import type { PreparedJob } from "../vm/operations/job-actions.js";
import { randomUUID } from "node:crypto";
import { crashPoint } from "./crash-point.js";
import { installQemuTls, migratesOverTls, removeQemuTls, TLS_CREDS_ID } from "./migration-tls.js";
import { checkAnsweredAddresses, checkClearMigration } from "./migration-transport.js";
import { settleOutcome, type Settlement } from "./outcome-settlement.js";
import { activeImage, readSnapshotRecord, type SnapshotRecord } from "../vm/snapshots/snapshot-record.js";
import { sendLayers } from "./layer-upload.js";
import { chainedDisks } from "./layer-files.js";
import { readBitmapMapping } from "./bitmap-mapping.js";
import { readBackupRecord } from "../vm/backups/backup-record.js";

/** Mirror jobs a restarted daemon finds: completed (after RAM) or abandoned (before). */
async function cancelLeftoverMirrors(session: QemuSession, force = true): Promise<void> {
  const jobs = await session.execute("query-block-jobs").catch(() => []);
  for (const j of jobs.filter((x) => x.device.startsWith("mirror-"))) {
    await session.execute("block-job-cancel", { device: j.device, force }).catch(() => {});
  }
  for (let i = 0; i < 100; i++) {
    const left = (await session.execute("query-block-jobs").catch(() => [])).filter((x) => x.device.startsWith("mirror-"));
    if (left.length === 0) break;
    await sleep(100);
  }
}

/** tlsHostname: set when RAM and disks go over TLS, the name the destination's certificate must carry. */
interface SourceTransport {
  tlsHostname?: string;
  channels: number;
}

function destinationHost(req: Pick<MigrateRequest, "destination">): string {
  return new URL(req.destination).hostname.replace(/^\[|\]$/g, "");
}

const PROGRESS_EVERY_MS = 250;
/** RAM transfer that makes no progress for this long is given up (a dead link never errors by itself). */
const STALL_MS = 10_000;

export class MigrationSource {
  constructor(
    private readonly host: HostContext,
    private readonly registry: VmRegistry,
    private readonly jobs: JobRegistry,
  ) {}

  /** Checks the request; the migration then runs as the job, under the VM's `migrate` operation (operations/job-actions.ts). */
  async prepare(vm: Vm, req: ActionOf<"migrate">): Promise<PreparedJob> {
    const { name } = vm;
    if (!vm.session) throw new VmStateConflict(name, vm.settledState(), "migrate");
    if (vm.lock.current) throw new VmStateConflict(name, `busy with ${vm.lock.current.name}`, "migrate");
    // A disk backup is a block job of its own: the migration would end the qemu it runs in.
    if (vm.job?.state === "running") throw new VmStateConflict(name, `busy with a ${vm.job.kind} job`, "migrate");
    // The destination's qemu is built from the definition: its devices must sit where the source's do.
    if (devicesChangedSinceStart(vm)) throw new VmStateConflict(name, "running with devices hot-plugged since its start (restart it first)", "migrate");
    const difference = await deviceLayoutDifference(vm, this.host);
    if (difference.length) {
      throw new VmStateConflict(name, `running with other devices than its definition gives (${difference.join("; ")}); restart it first`, "migrate");
    }
    // A VM's own disks, where its snapshot layers live, are never on shared storage: only a copy carries them.
    if (req.storage === "shared" && (await readSnapshotRecord(vm.paths)).snapshots.length > 0) {
      throw new SnapshotsNotMigrated(
        `VM "${name}" has snapshots: their layers live in the VM's own directory, which shared storage does not reach; migrate it with storage "copy", which copies them`,
        { vm: name },
      );
    }
    if (req.storage === "shared") {
      const own = vm.definition.disks.findIndex((d) => !d.image);
      if (own >= 0) {
        const field = `disks.${own}`;
        throw new ValidationFailed(`${field}: lives in the VM's own directory; migrate it with storage "copy"`, [
          { field: "storage", message: `disk ${vm.definition.disks[own]!.name} is not on shared storage` },
        ]);
      }
    }
    // Refused here, before the destination is asked anything, when RAM would cross the network in clear unallowed.
    if (checkClearMigration({ tls: migratesOverTls(this.host), insecureMigration: this.host.config.insecureMigration }, destinationHost(req), "source")) {
      vm.log.warn({ destination: req.destination }, "--insecure-migration: sending guest RAM and disks in clear");
    }
    const job = this.jobs.create("migrate", name);
    // The destination records the outcome under this id; the journal keeps it to ask after a restart.
    const migration = randomUUID();
    return {
      job,
      // Journaled as the migration; its outcome (commit, roll-back, resumed here) ends the entry.
      run: (run) => run.journaled({ ...req, kind: "migrate" }, () => this.run(vm, job, req, migration), { job: job.id, migration }),
      failed: (err: unknown) => {
        const e = err instanceof VmhError ? err : new MigrationFailed((err as Error).message);
        if (job.state === "running") job.finish(job.signal.aborted ? "cancelled" : "failed", undefined, { code: e.code, detail: e.message });
        vm.log.warn({ err: e.message }, "migration did not complete; the guest runs here");
      },
    };
  }

  private async run(vm: Vm, job: Job, req: MigrateRequest, migration: string): Promise<void> {
    const session = vm.session!;
    const peer = PeerClient.of(this.host, req.destination);
    const started = Date.now();
    vm.publish("migration.started", { job: job.id, destination: req.destination, storage: req.storage });

    const transport = this.transport(req);
    const snapshots = req.storage === "copy" ? await readSnapshotRecord(vm.paths) : undefined;
    const chained = snapshots ? chainedDisks(snapshots) : new Set<string>();
    // What arrived there is removed if the destination does not take it in; one that cannot be told removes it after a silence.
    const dropLayers = async (err: unknown): Promise<never> => {
      if (chained.size > 0) await peer.request("DELETE", `/v1/incoming/${vm.name}`, undefined, 5000).catch(() => {});
      throw err;
    };
    if (snapshots && chained.size > 0) {
      job.setPhase("copying-layers");
      await sendLayers(peer, vm.name, migration, vm.paths.dir, snapshots, (p) => job.update(p), job.signal).catch(dropLayers);
    }
    job.setPhase("preparing-destination");
    const reply = await this.prepareDestination(vm, peer, req, migration, transport, chained.size > 0 ? snapshots : undefined).catch(dropLayers);
    await vm.journal.stepDone("destination-prepared");
    const mirrors = new DiskMirrors(session, vm.definition.disks.map((d) => d.name), chained);
    let ramStarted = false;
    try {
      await checkAnsweredAddresses(req.destination, reply);
      if (transport.tlsHostname) await installQemuTls(vm, session, this.host, { endpoint: "client" });
      const tls = transport.tlsHostname ? { creds: TLS_CREDS_ID, hostname: transport.tlsHostname } : undefined;
      if (req.storage === "copy") {
        job.setPhase("copying-disks");
        await mirrors.start(reply.nbd!, (p) => job.update(p), job.signal, () => this.keepAlive(peer, vm), tls);
        await vm.journal.stepDone("disks-in-sync");
      }
      job.setPhase("migrating-ram");
      await this.configure(session, req, transport, vm.definition.disks.map((d) => d.name));
      ramStarted = true;
      await session.execute("migrate", { uri: reply.uri });
      const info = await this.watchRam(vm, session, peer, job, req);
      await vm.journal.stepDone("ram-completed");
      job.update({
        downtimeMs: info.downtime ?? null,
        totalTimeMs: info["total-time"] ?? null,
        // The final count: the last poll before completion missed the end of the transfer.
        ...(info.ram ? { bytesTransferred: info.ram.transferred } : {}),
      });
    } catch (err) {
      await this.rollBack(vm, session, peer, mirrors, ramStarted);
      await removeQemuTls(session);
      throw err;
    }

    // From here the guest is paused here and whole over there: no more guessing.
    job.setPhase("switching-over");
    await mirrors.complete();
    crashPoint("migrate-switching-over");
    // An older destination names no id: then it is asked by name.
    const outcome = await settleOutcome(this.host, this.settlement(vm, peer, reply.migration, req.storage, job), "commit");
    if (outcome === "resumed-here") {
      throw new MigrationFailed("the destination did not take the guest; it runs here again");
    }
    job.setPhase("completed");
    job.finish("succeeded", {
      destination: peer.url,
      downtimeMs: job.progress.downtimeMs ?? null,
      totalTimeMs: Date.now() - started,
      tls: transport.tlsHostname !== undefined,
      channels: transport.channels,
    });
  }

  /** TLS when this host has it (the destination must then too), and how many RAM connections. */
  private transport(req: MigrateRequest): SourceTransport {
    // qemu 7.2 runs postcopy over one connection only.
    const channels = req.postcopy ? 1 : this.host.config.migrationChannels;
    return migratesOverTls(this.host) ? { tlsHostname: destinationHost(req), channels } : { channels };
  }

  private async prepareDestination(
    vm: Vm,
    peer: PeerClient,
    req: MigrateRequest,
    migration: string,
    transport: SourceTransport,
    snapshots: SnapshotRecord | undefined,
  ): Promise<IncomingReply> {
    const files: Record<string, { pool: string; relative: string }> = {};
    for (const f of definitionFiles(vm.definition)) {
      const r = await this.host.pools.resolveFile(f.path, f.field);
      files[f.field] = { pool: r.pool, relative: r.relative };
    }
    const diskSizes: Record<string, number> = {};
    if (req.storage === "copy") {
      const resolved = Object.fromEntries(definitionFiles(vm.definition).map((f) => [f.field, f.path]));
      // The disks are the guest's writing: qemu-img reads them as the VM's own uid.
      const as = await this.host.qemuUsers.identityFor(vm.name);
      for (const [i, disk] of vm.definition.disks.entries()) {
        // A disk with snapshots: its top's size (a live resize grew the top only).
        const own = snapshots ? activeImage(snapshots, vm.paths, disk) : diskPath(vm.paths, disk);
        const file = disk.image ? (await this.host.pools.resolveFile(resolved[`disks.${i}.image`]!, `disks.${i}.image`)).absolute : own;
        diskSizes[disk.name] = (await this.host.qemuImg.info(file, disk.format, as)).virtualSize;
      }
    }
    try {
      return await peer.expect<IncomingReply>(201, "POST", "/v1/incoming", {
        definition: vm.definition,
        storage: req.storage,
        files,
        diskSizes,
        backups: await readBackupRecord(vm.paths),
        ...(snapshots ? { snapshots } : {}),
        postcopy: req.postcopy ?? false,
        migration,
        tls: transport.tlsHostname !== undefined,
        channels: transport.channels,
        ...(vm.owner ? { owner: { host: vm.owner.host, revision: vm.owner.revision } } : {}),
      });
    } catch (err) {
      if (err instanceof PeerUnreachable) throw new MigrationFailed(`destination unreachable: ${err.message}`);
      throw err;
    }
  }

  private async configure(session: QemuSession, req: MigrateRequest, transport: SourceTransport, disks: string[]): Promise<void> {
    await session.execute("migrate-set-capabilities", {
      capabilities: [
        { capability: "events", state: true },
        { capability: "auto-converge", state: req.autoConverge ?? false },
        { capability: "postcopy-ram", state: req.postcopy ?? false },
        // The disks' dirty bitmaps go along, so the next backup on the destination can be incremental.
        { capability: "dirty-bitmaps", state: true },
        { capability: "multifd", state: transport.channels > 1 },
      ],
    });
    await session.execute("migrate-set-parameters", {
      ...(req.maxDowntimeMs ? { "downtime-limit": req.maxDowntimeMs } : {}),
      // 0 would mean "no limit" to some versions: a large value instead.
      "max-bandwidth": (req.bandwidthMiBps ?? 100_000) * 1024 * 1024,
      // Set every time: this qemu may have migrated before, with other settings.
      "tls-creds": transport.tlsHostname ? TLS_CREDS_ID : "",
      "tls-hostname": transport.tlsHostname ?? "",
      ...(transport.channels > 1 ? { "multifd-channels": transport.channels } : {}),
      // A copy: each disk's bitmaps go to the destination's top node, whatever the top is named here (bitmap-mapping.ts).
      ...(req.storage === "copy" ? { "block-bitmap-mapping": await readBitmapMapping(session, disks) } : {}),
    });
  }

  /** Follows query-migrate until the end, keeping the job's figures and the destination's watchdog fed. */
  private async watchRam(vm: Vm, session: QemuSession, peer: PeerClient, job: Job, req: MigrateRequest): Promise<MigrationInfo> {
    let lastTransferred = -1;
    let lastProgressAt = Date.now();
    let postcopyStarted = false;
    for (;;) {
      if (job.signal.aborted) throw new MigrationFailed("cancelled by the operator");
      const info = await session.execute("query-migrate");
      const ram = info.ram;
      if (ram) {
        job.update({
          bytesTransferred: ram.transferred,
          bytesRemaining: ram.remaining,
          bytesTotal: ram.total,
          percent: ram.total ? Math.min(100, Math.round((100 * (ram.total - ram.remaining)) / ram.total)) : 0,
          dirtyPagesRate: ram["dirty-pages-rate"] ?? null,
          expectedDowntimeMs: info["expected-downtime"] ?? null,
        });
        if (ram.transferred !== lastTransferred) {
          lastTransferred = ram.transferred;
          lastProgressAt = Date.now();
        }
      }
      switch (info.status) {
        case "completed":
          return this.settledFigures(session);
        case "failed":
        case "cancelled":
          throw new MigrationFailed(`qemu: migration ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`);
      }
      if (Date.now() - lastProgressAt > STALL_MS) throw new MigrationFailed(`no progress for ${STALL_MS / 1000} s: link lost?`);
      if (req.postcopy && !postcopyStarted && (ram?.["dirty-sync-count"] ?? 0) >= 2) {
        postcopyStarted = true;
        await vm.journal.stepDone("postcopy-started");
        await session.execute("migrate-start-postcopy");
      }
      await this.keepAlive(peer, vm);
      await sleep(PROGRESS_EVERY_MS);
    }
  }

  /**
   * qemu reports `completed` a moment before it has stopped the guest for good and
   * filled in downtime and total time; the run state `postmigrate` marks that point.
   */
  private async settledFigures(session: QemuSession): Promise<MigrationInfo> {
    for (let i = 0; i < 100 && (await session.refreshStatus().catch(() => undefined)) !== "postmigrate"; i++) await sleep(20);
    return session.execute("query-migrate");
  }

  /** Tells the destination the source is still there (it aborts an incoming VM left silent). */
  private async keepAlive(peer: PeerClient, vm: Vm): Promise<void> {
    await peer.request("GET", `/v1/incoming/${vm.name}?uuid=${vm.definition.uuid}`, undefined, 2000).catch(() => {});
  }

  /** Before RAM completed: stop everything under way, remove the destination's copy, the guest runs on here. */
  private async rollBack(vm: Vm, session: QemuSession, peer: PeerClient, mirrors: DiskMirrors, ramStarted: boolean): Promise<void> {
    if (ramStarted) {
      await session.execute("migrate_cancel").catch(() => {});
      for (let i = 0; i < 50; i++) {
        const st = (await session.execute("query-migrate").catch(() => ({}) as MigrationInfo)).status;
        if (st !== "active" && st !== "cancelling" && st !== "setup") break;
        await sleep(100);
      }
    }
    await mirrors.cancel();
    await peer.request("DELETE", `/v1/incoming/${vm.name}`, undefined, 5000).catch(() => {
      vm.log.warn("destination unreachable for the abort; it removes an incoming VM left silent by itself");
    });
    if (session.status !== "running") await session.refreshStatus().catch(() => {});
    await endEntry(vm, "quiet");
  }

  /**
   * After a restart of this daemon mid-migration. RAM not yet complete: cancel and
   * roll back, the guest runs on here. RAM complete (or postcopy begun): the
   * destination decides, exactly as if the commit had gone unanswered.
   */
  async recover(vm: Vm, action: ActionOf<"migrate">, entry: Pick<JournalEntry, "done" | "facts">): Promise<void> {
    const { destination, storage } = action;
    const peer = PeerClient.of(this.host, destination);
    const session = vm.session;
    // An entry written before ids has none: the destination is then asked by name.
    const { migration } = entry.facts;
    vm.log.warn({ destination, migration, done: entry.done }, "a migration was cut short by a daemon restart");
    if (!session) {
      if (await this.committedThere(vm, peer, migration)) return this.dropLocalCopy(vm, storage);
      await peer.request("DELETE", `/v1/incoming/${vm.name}`).catch(() => {});
      await endEntry(vm, "recorded");
      return;
    }
    const info = await session.execute("query-migrate").catch(() => ({}) as MigrationInfo);
    const past = info.status === "completed" || session.status === "postmigrate" || entry.done.includes("postcopy-started");
    if (!past) {
      await this.rollBack(vm, session, peer, new DiskMirrors(session, []), true);
      await cancelLeftoverMirrors(session);
      return;
    }
    await cancelLeftoverMirrors(session, false);
    await settleOutcome(this.host, this.settlement(vm, peer, migration, storage), "ask");
  }

  private settlement(vm: Vm, peer: PeerClient, migration: string | undefined, storage: "shared" | "copy", job?: Job): Settlement {
    return {
      vm,
      peer,
      migration,
      ...(job ? { job } : {}),
      removeHere: async () => {
        await vm.journal.stepDone("committed");
        crashPoint("migrate-committed");
        job?.setPhase("cleaning-up");
        await this.dropLocalCopy(vm, storage);
      },
    };
  }

  /** Whether the destination says the guest runs there (its record, or by name without an id). */
  private async committedThere(vm: Vm, peer: PeerClient, migration: string | undefined): Promise<boolean> {
    if (migration) {
      const r = await peer.request<{ outcome: string }>("GET", `/v1/migrations/${migration}`).catch(() => undefined);
      return r?.status === 200 && r.body.outcome === "committed";
    }
    const s = await peer.request<{ state: string }>("GET", `/v1/incoming/${vm.name}?uuid=${vm.definition.uuid}`).catch(() => undefined);
    return s?.status === 200 && s.body.state === "running";
  }

  /** The guest runs on the destination: end qemu here and forget the VM (shared images stay). */
  private async dropLocalCopy(vm: Vm, storage: "shared" | "copy"): Promise<void> {
    await killQemu(vm, "migrated");
    vm.log.info({ storage }, "migrated away; removing the local copy");
    await this.host.store.remove(vm.name);
    this.registry.forget(vm.name);
    vm.publish("vm.migrated-away");
  }
}
