// The destination side of a live migration. The source daemon asks it to prepare
// (a VM directory, disks for a copy, qemu waiting with -incoming, NBD exports),
// then to commit (resume the guest) once RAM has arrived, or to abort. The guest
// runs here only after a commit; until then an abort, a source that goes silent
// or a restart of this daemon removes everything that was prepared. Each
// migration's outcome (prepared, committed, aborted) is recorded durably under
// its id before it takes effect, and answered after any restart (outcome-store.ts).
import { endEntry } from "../vm/action-journal.js";
import os from "node:os";
import type { X509Certificate } from "node:crypto";
import { checkClearMigration } from "./migration-transport.js";
import { distinguishedName, installQemuTls, migratesOverTls, removeQemuTls, TLS_AUTHZ_ID, TLS_CREDS_ID } from "./migration-tls.js";
import { FileNotFound, InsecureMigrationRefused, InsufficientResources, MigrationRecordNotFound, VmExists, VmOwnedElsewhere, VmStateConflict } from "../errors.js";
import type { HostContext } from "../vm/host-context.js";
import { launchIncomingQemu } from "../vm/operations/start-vm.js";
import { killQemu } from "../vm/operations/stop-vm.js";
import type { Vm } from "../vm/vm.js";
import type { VmDefinition } from "../definition/vm-definition.js";
import type { VmRegistry } from "../vm/vm-registry.js";
import { diskPath } from "../store/vm-paths.js";
import { withFilePaths } from "./definition-files.js";
import { freePort } from "../net/free-port.js";
import type { IncomingReply, IncomingRequest, IncomingState } from "./migration-schema.js";
import { access } from "node:fs/promises";
import { IncomingImages } from "./incoming-images.js";
import type { JournalEntry } from "../store/operation-journal.js";
import { setTimeout as sleep } from "node:timers/promises";
import { randomUUID } from "node:crypto";
import type { OutcomeStore } from "./outcome-store.js";
import type { OutcomeRecord } from "./outcome-record.js";
import { crashPoint } from "./crash-point.js";
import { recoverIncoming, settlePreparedRecords } from "./incoming-recovery.js";
import { writeBackupRecord } from "../vm/backups/backup-record.js";
import path from "node:path";
import type { Readable } from "node:stream";
import { IncomingLayers, type LayerUpload } from "./incoming-layers.js";
import { layerFiles } from "./layer-files.js";
import { checkIncomingRecord, makeTop } from "./incoming-chains.js";
import { activeImage, writeSnapshotRecord } from "../vm/snapshots/snapshot-record.js";

/** An incoming VM whose source has not been heard from for this long is aborted. */
const SOURCE_SILENCE_MS = 15_000;

/** How the source's qemu is admitted: by the distinguished name of its certificate, or (no TLS) by anyone reaching the port. */
interface IncomingTransport {
  peerDn?: string;
}

interface Incoming {
  vm: Vm;
  /** The id the outcome is recorded under. */
  migration: string;
  state: IncomingState;
  storage: "shared" | "copy";
  lastContact: number;
  /** A commit is waiting for the last of the migration to arrive. */
  committing?: boolean;
  /** Fleet mode: the source's hold on the owner key, swapped to this host at commit. */
  owner?: IncomingRequest["owner"];
  /** Fleet mode: the key is this host's (a commit got that far): no abort from here on. */
  keyTaken?: boolean;
  settle: () => void;
  watchdog: NodeJS.Timeout;
}

export class MigrationTarget {
  private readonly incoming = new Map<string, Incoming>();
  /** Pool images made for a storage copy, until the commit makes them the guest's. */
  private readonly images: IncomingImages;
  /** Snapshot layers copied here ahead of the prepare that takes them in. */
  private readonly layers: IncomingLayers;

  constructor(
    private readonly host: HostContext,
    private readonly registry: VmRegistry,
    private readonly outcomes: OutcomeStore,
  ) {
    this.images = new IncomingImages(host.pools, host.qemuImg);
    this.layers = new IncomingLayers(path.join(host.config.stateDir, "incoming-layers"));
  }

  /** One snapshot layer of a VM that is to migrate here (incoming-layers.ts); a VM of that name here already refuses it. */
  async receiveLayer(up: LayerUpload, body: Readable): Promise<void> {
    if (this.registry.list().some((v) => v.name === up.vm)) throw new VmExists(up.vm);
    await this.layers.receive(up, body);
  }

  /** `caller`: the certificate the source presented on this request (mutual TLS), whose name alone may send the migration. */
  async prepare(req: IncomingRequest, caller?: X509Certificate): Promise<IncomingReply> {
    const def = req.definition;
    const transport = this.transport(req, caller);
    // Postcopy resumes the guest here before the commit, ahead of the owner key's handover.
    if (this.host.fleet && req.postcopy) throw new VmStateConflict(def.name, "in fleet mode", "migrate with postcopy");
    // Fleet mode: refused before any RAM moves if the source's hold on the key is not current.
    const owner = this.host.fleet ? await this.host.fleet.keys.owner(def.name) : undefined;
    if (owner && owner.host !== this.host.fleet!.hostId && (owner.host !== req.owner?.host || owner.revision !== req.owner?.revision)) {
      throw new VmOwnedElsewhere(def.name, owner.host, owner.revision);
    }
    // An older source sends no id: one is made here, and named in the reply.
    const migration = req.migration ?? randomUUID();
    return await this.registry.perform(
      def.name,
      { kind: "migrate-in", storage: req.storage },
      {
        definition: def,
        make: () => this.makeDirectory(req),
        facts: (vm) => ({ createdImages: this.images.list(vm.name), migration }),
        receive: (vm, answer) => this.receive(vm, req, migration, transport, answer),
        undo: async (vm) => {
          if (vm) await this.removeAll(vm, migration);
          else await this.images.remove(def.name);
          await this.layers.discard(def.name);
        },
      },
    );
  }

  /** The VM's directory, with its disks made here for a copy; answers with the definition as it is here. */
  private async makeDirectory(req: IncomingRequest): Promise<VmDefinition> {
    const def = req.definition;
    await this.checkMemory(def.memoryMiB);
    const localDef = withFilePaths(def, await this.localPaths(req));
    const snapshots = req.snapshots;
    if (snapshots) checkIncomingRecord(snapshots, req);
    await this.host.store.create(localDef, async (staging) => {
      if (req.backups) await writeBackupRecord(staging, req.backups);
      if (req.storage !== "copy") return;
      // The layers under each top were copied ahead (layer-upload.ts): they become the VM's, the tops are made empty over them.
      if (snapshots) {
        await this.layers.adopt(def.name, req.migration!, layerFiles(snapshots), staging.dir);
        await writeSnapshotRecord(staging, snapshots);
      }
      for (const [i, disk] of localDef.disks.entries()) {
        const size = req.diskSizes[disk.name];
        if (!size) throw new FileNotFound(`no size given for disk ${disk.name}`, { field: `diskSizes.${disk.name}` });
        const chain = snapshots?.chains[disk.name];
        if (disk.image) await this.images.create(def.name, disk.image, `disks.${i}.image`, disk.format, size);
        else if (chain && chain.length > 1) await makeTop(this.host, staging.dir, chain, size);
        else await this.host.qemuImg.create(snapshots ? activeImage(snapshots, staging, disk) : diskPath(staging, disk), disk.format, size);
      }
    });
    return localDef;
  }

  /** Runs qemu -incoming (under the VM's migrate-in operation) and answers the source; settles at commit or abort. */
  private async receive(
    vm: Vm,
    req: IncomingRequest,
    migration: string,
    transport: IncomingTransport,
    answer: (reply: IncomingReply) => void,
  ): Promise<void> {
    // Before anything listens: a restarted daemon then knows this migration was here.
    await this.outcomes.record(migration, vm.definition, "prepared");
    await launchIncomingQemu(vm, this.host);
    const session = vm.session!;
    const hostAddr = this.migrationHost();
    // Nothing listens before TLS is required of what connects.
    const tls = transport.peerDn ? { "tls-creds": TLS_CREDS_ID, "tls-authz": TLS_AUTHZ_ID } : {};
    if (transport.peerDn) {
      await installQemuTls(vm, session, this.host, { endpoint: "server", peerDn: transport.peerDn });
      await session.execute("migrate-set-parameters", tls);
    }
    const capabilities = [
      // The source sends the disks' dirty bitmaps: the stream has a section for them only this takes.
      { capability: "dirty-bitmaps", state: true },
      ...(req.postcopy ? [{ capability: "postcopy-ram", state: true }] : []),
      ...(req.channels > 1 ? [{ capability: "multifd", state: true }] : []),
    ];
    await session.execute("migrate-set-capabilities", { capabilities });
    if (req.channels > 1) await session.execute("migrate-set-parameters", { "multifd-channels": req.channels });
    let nbd: IncomingReply["nbd"];
    if (req.storage === "copy") {
      const port = await freePort(hostAddr);
      await session.execute("nbd-server-start", { addr: { type: "inet", data: { host: hostAddr, port: String(port) } }, ...tls });
      const exports: Record<string, string> = {};
      for (const disk of vm.definition.disks) {
        await session.execute("block-export-add", {
          type: "nbd",
          id: `exp-${disk.name}`,
          "node-name": `d-${disk.name}`,
          name: disk.name,
          writable: true,
        });
        exports[disk.name] = disk.name;
      }
      nbd = { host: hostAddr, port, exports };
    }
    const uri = `tcp:${hostAddr}:${await freePort(hostAddr)}`;
    await session.execute("migrate-incoming", { uri });
    await vm.journal.stepDone("receiving");
    await new Promise<void>((settle) => {
      const entry: Incoming = {
        vm,
        migration,
        state: "receiving",
        storage: req.storage,
        lastContact: Date.now(),
        ...(req.owner ? { owner: req.owner } : {}),
        settle,
        watchdog: setInterval(() => this.checkSilence(vm.name), 1000),
      };
      this.incoming.set(vm.name, entry);
      vm.log.info({ uri, nbd }, "incoming migration prepared");
      vm.publish("migration.incoming", { uri, storage: req.storage });
      answer({ uri, ...(nbd ? { nbd } : {}), migration });
    });
  }

  /** The source's word that RAM has arrived and its own copy is stopped: the guest runs here now. */
  async commit(name: string): Promise<Vm> {
    const entry = this.incoming.get(name);
    if (!entry || entry.state !== "receiving") throw new VmStateConflict(name, entry?.state ?? "not incoming", "commit");
    if (entry.committing) throw new VmStateConflict(name, "being committed", "commit");
    entry.committing = true;
    entry.lastContact = Date.now();
    const { vm } = entry;
    const session = vm.session;
    if (!session) throw new VmStateConflict(name, "without qemu", "commit");
    // The source may see its side complete while this side still loads the last pages and device state.
    let mig = await session.execute("query-migrate");
    for (let i = 0; i < 100 && (mig.status === "active" || mig.status === "device" || mig.status === "setup"); i++) {
      await sleep(100);
      mig = await session.execute("query-migrate");
    }
    if (mig.status !== "completed") {
      entry.committing = false;
      throw new VmStateConflict(name, `incoming migration ${mig.status ?? "not started"}`, "commit");
    }
    // Fleet mode: the owner key moves to this host in one compare-and-swap, before the
    // guest may run here. If it fails, the guest stays paused here and the key with the source.
    const fleet = this.host.fleet;
    if (fleet && !entry.keyTaken) {
      try {
        vm.holdOwner(
          entry.owner
            ? await fleet.keys.handover(name, entry.owner.host, entry.owner.revision, vm.definition.ha)
            : await fleet.keys.acquire(name, vm.definition.ha),
        );
      } catch (err) {
        entry.committing = false;
        // etcd unreachable: the source asks again. The key held elsewhere or at a newer
        // revision: this copy will never run, so it goes and the source resumes its own.
        if (err instanceof VmOwnedElsewhere) await this.abort(name, err.message).catch(() => {});
        throw err;
      }
      entry.keyTaken = true;
      crashPoint("incoming-key-taken");
    }
    try {
      // Durable before `cont`: from here on this host answers `committed`, after any restart.
      await this.outcomes.record(entry.migration, vm.definition, "committed");
    } catch (err) {
      entry.committing = false;
      throw err;
    }
    entry.state = "running";
    await vm.journal.stepDone("commit-begun");
    // The guest's disks now: no abort removes them from here on.
    this.images.keep(name);
    if (entry.storage === "copy") await session.execute("nbd-server-stop").catch(() => {});
    await removeQemuTls(session);
    await session.execute("cont");
    crashPoint("incoming-committed");
    if (session.status !== "running") await session.refreshStatus();
    this.finish(entry);
    await endEntry(vm, "strict");
    vm.log.info("incoming migration committed: the guest runs here");
    vm.publish("migration.committed", {});
    return vm;
  }

  /** Removes everything prepared for an incoming VM that was never committed (or only its layers copied ahead). */
  async abort(name: string, why: string): Promise<void> {
    const entry = this.incoming.get(name);
    if (!entry && (await this.layers.discard(name))) return;
    if (!entry) throw new VmStateConflict(name, "not incoming", "abort");
    if (entry.state !== "receiving") throw new VmStateConflict(name, entry.state, "abort");
    // A commit under way decides; an abort now could kill a guest about to run here.
    if (entry.committing || entry.keyTaken) throw new VmStateConflict(name, "being committed", "abort");
    entry.state = "aborted";
    this.finish(entry);
    entry.vm.log.warn({ why }, "incoming migration aborted");
    entry.vm.publish("migration.aborted", { why });
    await this.removeAll(entry.vm, entry.migration);
  }

  /**
   * What the source must know, by name (the keep-alive, and a source that sends
   * no id): the receive in memory, else the newest outcome record (a committed
   * guest stays `running` even after its qemu ended), else, for migrations from
   * before records, what is here. A record still `prepared` is being recovered: unknown.
   */
  async state(name: string, uuid?: string): Promise<IncomingState | "unknown"> {
    const entry = this.incoming.get(name);
    if (entry) {
      entry.lastContact = Date.now();
      return entry.state;
    }
    const vm = this.registry.list().find((v) => v.name === name && (!uuid || v.definition.uuid === uuid));
    if (vm?.state() === "unknown") return "unknown";
    const rec = await this.outcomes.latestFor(name, uuid);
    if (rec) return rec.outcome === "committed" ? "running" : rec.outcome === "aborted" ? "aborted" : "unknown";
    if (!vm) return "aborted";
    return vm.session ? "running" : "aborted";
  }

  /** After a restart of this daemon: the receive a journal entry names is finished or undone (incoming-recovery.ts). */
  async recover(vm: Vm, entry: Pick<JournalEntry, "done" | "facts">): Promise<void> {
    await recoverIncoming(this.host, this.outcomes, vm, entry, {
      removeAll: async () => {
        this.images.restore(vm.name, entry.facts.createdImages);
        await this.removeAll(vm, entry.facts.migration);
      },
    });
  }

  /** The outcome record of a migration id (the source's question after any restart). */
  async outcome(id: string): Promise<OutcomeRecord> {
    const rec = await this.outcomes.read(id);
    if (!rec) throw new MigrationRecordNotFound(id);
    const entry = this.incoming.get(rec.vm);
    if (entry?.migration === id) entry.lastContact = Date.now();
    return rec;
  }

  async acknowledge(id: string): Promise<OutcomeRecord> {
    const rec = await this.outcomes.acknowledge(id);
    if (!rec) throw new MigrationRecordNotFound(id);
    return rec;
  }

  /** At the daemon's start, once adoption settled: see settlePreparedRecords. */
  async settleRecords(): Promise<void> {
    await this.layers.sweep();
    await settlePreparedRecords(this.outcomes, this.registry.list());
  }

  private finish(entry: Incoming): void {
    clearInterval(entry.watchdog);
    this.incoming.delete(entry.vm.name);
    entry.settle();
  }

  private checkSilence(name: string): void {
    const entry = this.incoming.get(name);
    if (entry && entry.state === "receiving" && Date.now() - entry.lastContact > SOURCE_SILENCE_MS) {
      void this.abort(name, `no word from the source for ${SOURCE_SILENCE_MS / 1000} s`).catch(() => {});
    }
  }

  private async removeAll(vm: Vm, migration: string | undefined): Promise<void> {
    // Before anything goes: a restart in the middle still answers `aborted`. Not written, the source keeps waiting.
    if (migration) await this.outcomes.record(migration, vm.definition, "aborted").catch((err: unknown) => vm.log.error({ err }, "cannot record the aborted migration"));
    if (vm.session) await killQemu(vm, "migration-aborted").catch(() => {});
    await this.host.store.remove(vm.name).catch((err) => vm.log.error({ err }, "cannot remove the incoming VM"));
    await this.images.remove(vm.name);
    this.registry.forget(vm.name);
  }

  private async checkMemory(memoryMiB: number): Promise<void> {
    const available = Math.floor(os.freemem() / 1024 / 1024);
    const reserved = this.host.config.hostReservedMiB;
    if (memoryMiB + reserved > available) {
      throw new InsufficientResources(`this host has ${available} MiB free and keeps ${reserved} MiB; the VM needs ${memoryMiB} MiB`, {
        field: "definition.memoryMiB",
      });
    }
  }

  /** This host's path for each file the source named by pool; read-only files must already be here. */
  private async localPaths(req: IncomingRequest): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const [field, f] of Object.entries(req.files)) {
      const p = this.host.pools.locate(f.pool, f.relative, field);
      const isDisk = field.startsWith("disks.");
      if ((!isDisk || req.storage === "shared") && !(await exists(p))) {
        throw new FileNotFound(`${field}: ${f.pool}:${f.relative} is not on this host`, { field });
      }
      out[field] = p;
    }
    return out;
  }

  /**
   * How this migration's RAM and disks arrive: as the source sends them (over TLS
   * or in clear) if this host takes them so, else refused before anything is made.
   */
  private transport(req: IncomingRequest, caller: X509Certificate | undefined): IncomingTransport {
    const tls = migratesOverTls(this.host);
    if (req.tls && !tls) {
      throw new InsecureMigrationRefused("the source sends over TLS but this host has no TLS for migrations: give it --tls-cert, --tls-key and --tls-ca");
    }
    if (!req.tls && tls) {
      throw new InsecureMigrationRefused("this host takes migrations over TLS only (it has --tls-ca): the source needs --tls-cert, --tls-key and --tls-ca too");
    }
    if (!tls) {
      if (checkClearMigration({ tls: false, insecureMigration: this.host.config.insecureMigration }, this.migrationHost(), "destination")) {
        this.host.log.warn({ vm: req.definition.name, address: this.migrationHost() }, "--insecure-migration: receiving guest RAM and disks in clear");
      }
      return {};
    }
    // Over the Unix socket there is no certificate to admit the source's qemu by.
    if (!caller) throw new InsecureMigrationRefused("a migration over TLS is prepared by the source host itself, over the TCP API with its certificate");
    return { peerDn: distinguishedName(caller) };
  }

  private migrationHost(): string {
    const h = this.host.config.migrationHost ?? this.host.config.listen?.slice(0, this.host.config.listen.lastIndexOf(":"));
    return (h ?? "127.0.0.1").replace(/^\[|\]$/g, "");
  }
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

