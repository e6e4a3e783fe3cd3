// The registry of this host's VMs, and the one place every VmAction is carried
// out: perform switches over the action union (exhaustively) and hands each
// group to its handler in operations/. HTTP routes and the CLI only produce actions.
import { ShuttingDown, UuidInUse, VmBusy, VmExists, VmNotFound, VmStateConflict } from "../errors.js";
import { completeDefinition, type VmDefinition, vmCreateSchema } from "../definition/vm-definition.js";
import type { HostContext } from "./host-context.js";
import { createVmOnDisk } from "./operations/create-vm.js";
import { CrashPolicy } from "./crash-policy.js";
import { MemoryAdmission } from "../host/memory-admission.js";
import { Vm, type VmView } from "./vm.js";
import { adoptVm } from "./vm-adoption.js";
import { ADOPTION_PARALLEL, runBounded } from "./adoption-pool.js";
import { pruneTapFilters } from "../net/tap-devices.js";
import type { JournalEntry } from "../store/operation-journal.js";
import { findQemuProcesses, type QemuProcessInfo } from "../qemu/qemu-process.js";
import { assertNever, type ActionOf, type VmAction } from "../definition/vm-action.js";
import type { ActionContext } from "./operations/action-context.js";
import { actionRun, type ActionRun } from "./operations/action-run.js";
import { asStart, performLifecycle } from "./operations/lifecycle-actions.js";
import { performDeviceAction } from "./operations/device-actions.js";
import { recoverInterrupted, type MigrationRecovery, type Recovery } from "./interrupted-operation.js";
import { VmOwnership } from "./vm-ownership.js";
import { refuseWhileOutcomeUnknown } from "./migration-outcome.js";
import { performJobAction, type JobAction, type JobActions, type JobHold } from "./operations/job-actions.js";
import { runPassthrough, type PassthroughLog } from "./operations/qmp-passthrough.js";
import { performMigrateIn, type IncomingWork } from "./operations/migrate-in.js";
import type { Job } from "../jobs/job-registry.js";
import type { VmSnapshots } from "./snapshots/vm-snapshots.js";
import { endAllExports, endExport, startExport, type DiskExport } from "./backups/disk-export.js";
import type { z } from "zod";
import { setTimeout as sleep } from "node:timers/promises";

export type { VmAction, MigrationRecovery, JobActions };

/**
 * The actions perform carries out; adoption runs under `adopt` at the daemon's
 * start (load). An incoming migration (`migrate-in`) comes with the receiving
 * side's work (src/migration/migration-target.ts).
 */
export type PerformedAction = Exclude<VmAction, { kind: "adopt" }>;
/** The actions that answer with the VM's view. */
export type ViewAction = Exclude<PerformedAction, JobAction | ActionOf<"qmp" | "migrate-in" | "export-disk">>;

export class VmRegistry {
  private readonly vms = new Map<string, Vm>();
  /** Names being created (or received) right now, with their uuids, so two creates of one name or uuid cannot race. */
  private readonly creating = new Map<string, string>();
  private readonly crashPolicy: CrashPolicy;
  private closing = false;

  /** What every handler gets: starts are admitted against the host's free memory (src/host/memory-admission.ts). */
  private readonly context: ActionContext;
  readonly ownership: VmOwnership;

  constructor(readonly host: HostContext) {
    this.crashPolicy = new CrashPolicy(host.log, (vm) => this.perform(vm.name, { kind: "start" }));
    const memory = new MemoryAdmission(host.config.reserveMemory, () =>
      this.list().flatMap((vm) => (vm.session ? [{ name: vm.name, memoryMiB: vm.definition.memoryMiB, pid: vm.session.pid }] : [])),
    );
    this.ownership = new VmOwnership(host, () => this.closing);
    this.context = { host, memory, ownership: this.ownership, finishRemovalLater: (name, action) => this.finishRemovalLater(name, action) };
  }

  /**
   * Loads every stored VM, then adopts the qemu of each, a bounded number at a
   * time (adoption-pool.ts). Resolves once every VM is registered; `adopted`
   * resolves once every adoption has settled. A VM still being adopted shows state
   * `unknown` and refuses operations (busy), so one hung qemu never holds up the
   * others or the API.
   */
  async load(): Promise<void> {
    for (const stored of await this.host.store.list()) {
      if ("error" in stored) {
        this.host.log.error({ vm: stored.name, reason: stored.error }, "VM definition unreadable");
        const vm = this.newVm(placeholderDefinition(stored.name));
        vm.markBroken(stored.error);
        this.vms.set(stored.name, vm);
        continue;
      }
      this.vms.set(stored.name, this.newVm(stored.definition));
    }
    const adoptions = [...this.vms.values()].map((vm) => ({ vm, ...settledSignal() }));
    this.answered = Promise.all(adoptions.map((a) => a.signalled)).then(() => {});
    this.adopted = runBounded(adoptions, ADOPTION_PARALLEL, (a) => this.adopt(a.vm, a.signal).finally(a.signal)).then(() => pruneTapFilters(this.host.log));
    void this.adopted.then(() =>
      this.ownership.settleKeys({
        find: (name) => this.vms.get(name),
        reserve: (name) => (this.vms.has(name) || this.creating.has(name) ? undefined : this.reserveName({ name, uuid: "" })),
        release: (name) => this.performQuietly(name, { kind: "release-owner" }),
      }),
    );
  }

  adopted: Promise<void> = Promise.resolve();
  /**
   * Resolves once every VM is adopted or waits on a qemu that has not answered
   * quickly (vm-adoption.ts, QEMU_SLOW_MS): what the API waits for before it opens,
   * so that a hung qemu keeps neither the API closed nor the others `unknown`.
   */
  answered: Promise<void> = Promise.resolve();
  /** Finishes or rolls back a migration a restart cut short, each by its own side (set by main). */
  recoverMigration: MigrationRecovery | undefined;
  /** The work of a backup or a migration out (set by main: the migration side imports the registry). */
  jobActions: JobActions | undefined;
  /** The snapshot operations (set by main, with the job registry a delete runs in). */
  snapshots: VmSnapshots | undefined;
  /** Refuses an action the host does not take now: starts and incoming migrations in maintenance (set by main, src/host/maintenance/). */
  hostGate: ((name: string, action: PerformedAction) => void) | undefined;

  private async adopt(vm: Vm, qemuSlow?: () => void): Promise<void> {
    let interrupted: JournalEntry | undefined;
    try {
      interrupted = await vm.lock.run("adopt", async () => {
        const entry = await adoptVm(vm, { qemuSlow });
        // qemu ended while no daemon watched: an export of its disk ends with it (under the lock, as every write of the record).
        if (!vm.session) await endAllExports(vm).catch((err: unknown) => vm.log.warn({ err }, "ending the stopped VM's disk exports failed"));
        return entry;
      });
    } catch (err) {
      vm.log.error({ err }, "adoption failed; the VM is left as it is");
      return;
    }
    vm.publish("vm.adopted", { state: vm.state(), pid: vm.session?.pid });
    if (vm.session && this.host.fleet) void this.ownership.reclaim(vm);
    if (vm.lastExit?.reason === "crashed" && !vm.session && !interrupted) this.crashPolicy.onCrash(vm);
    if (!interrupted) return;
    const recovery: Recovery = {
      context: this.context,
      perform: (name, action) => this.perform(name, action),
      migration: this.recoverMigration,
      snapshots: this.snapshots ? (vm, entry) => this.snapshots!.recover(vm, entry) : undefined,
      underLock: (vm, action, body) => this.underLock(vm, action, body),
    };
    recoverInterrupted(recovery, vm, interrupted).catch((err) => vm.log.error({ err, action: interrupted.action }, "finishing the interrupted operation failed"));
  }

  private newVm(def: VmDefinition): Vm {
    const log = this.host.log.child({ vm: def.name });
    return new Vm(def, this.host.store.paths(def.name), log, this.host.bus, (vm, reason) => this.afterExit(vm, reason), {
      consoleLogMax: this.host.config.consoleLogMax,
      maxConsoleViewers: this.host.config.maxConsoleViewers,
    });
  }

  /**
   * A crash goes to the crash policy. Any other end (the guest powered off, a
   * stop, a fence) gives the owner key back in fleet mode, so the key follows
   * the guest and another host may start it; a start meanwhile keeps it.
   */
  private afterExit(vm: Vm, reason: string): void {
    if (reason === "crashed") this.crashPolicy.onCrash(vm);
    else if (this.host.fleet) void this.performQuietly(vm.name, { kind: "release-owner" });
  }

  /**
   * qemu processes of this daemon's run directory that no VM owns: one whose name
   * has no definition, or that is not the qemu its VM is attached to. They are
   * reported, never killed: only the operator knows what they are.
   */
  async orphans(): Promise<QemuProcessInfo[]> {
    const all = await findQemuProcesses(this.host.config.runDir);
    return all.filter((p) => {
      const vm = p.name ? this.vms.get(p.name) : undefined;
      return !vm || vm.session?.pid !== p.pid;
    });
  }

  get(name: string): Vm {
    const vm = this.vms.get(name);
    if (!vm) throw new VmNotFound(name);
    return vm;
  }

  list(): Vm[] {
    return [...this.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  private async create(req: z.output<typeof vmCreateSchema>): Promise<Vm> {
    const def = completeDefinition(req);
    this.assertFree(def);
    this.creating.set(def.name, def.uuid);
    try {
      await createVmOnDisk(def, this.host);
      const vm = this.newVm(def);
      this.vms.set(def.name, vm);
      vm.publish("vm.created", { state: vm.state() });
      return vm;
    } finally {
      this.creating.delete(req.name);
    }
  }

  /**
   * Adds a VM whose directory has just been made for an incoming migration, or
   * refuses (409) if the name is taken. The caller holds it under its own operation.
   */
  private registerIncoming(def: VmDefinition): Vm {
    this.assertOpen();
    this.assertFree(def);
    const vm = this.newVm(def);
    this.vms.set(def.name, vm);
    return vm;
  }

  /** Reserves a name and uuid while an incoming VM's directory is made; the returned function releases them. */
  private reserveName(def: Pick<VmDefinition, "name" | "uuid">): () => void {
    this.assertOpen();
    this.assertFree(def);
    this.creating.set(def.name, def.uuid);
    return () => this.creating.delete(def.name);
  }

  /**
   * A VM's name and uuid are its own on this host. The uuid names its taps, its
   * SMBIOS identity and its guest's view of itself, so a second VM with the same
   * one is refused (409), also when it arrives by migration. The same VM coming
   * back is no exception to make: a VM that left was forgotten here, and one
   * still here has the name too, which is reported first.
   */
  private assertFree(def: Pick<VmDefinition, "name" | "uuid">): void {
    if (this.vms.has(def.name) || this.creating.has(def.name)) throw new VmExists(def.name);
    for (const [name, uuid] of this.creating) if (uuid === def.uuid) throw new UuidInUse(def.uuid, name);
    // A VM whose definition cannot be read shows a placeholder uuid, not its own.
    const holder = [...this.vms.values()].find((vm) => !vm.broken && vm.definition.uuid === def.uuid);
    if (holder) throw new UuidInUse(def.uuid, holder.name);
  }

  /** Removes a VM from the registry whose directory is already gone (migrated away, incoming aborted). */
  forget(name: string): void {
    this.vms.delete(name);
  }

  private async delete(vm: Vm): Promise<void> {
    if (vm.session) throw new VmStateConflict(vm.name, vm.settledState(), "delete");
    await this.ownership.release(vm);
    await this.host.store.remove(vm.name);
    this.vms.delete(vm.name);
    this.host.qemuUsers.forget(vm.name);
  }

  /**
   * Carries out one action on one VM (for a create, the VM it names); resolves
   * with the VM's view once it is done, with the job for one that runs as a job,
   * with qemu's answer for a QMP command. It takes the VM's operation lock in
   * the action's name (which publishes operation.started/ended) and hands the
   * handler the action's journal entry (operations/action-run.ts); a job holds
   * the lock while its work runs, a query to qemu and a backup hold none.
   */
  async perform(name: string, action: JobAction): Promise<Job>;
  async perform(name: string, action: ActionOf<"qmp">, log?: PassthroughLog): Promise<unknown>;
  async perform<R>(name: string, action: ActionOf<"migrate-in">, work: IncomingWork<R>): Promise<R>;
  async perform(name: string, action: ActionOf<"export-disk">): Promise<DiskExport>;
  async perform(name: string, action: ViewAction): Promise<VmView>;
  async perform(name: string, action: PerformedAction, extra?: PassthroughLog | IncomingWork<unknown>): Promise<unknown> {
    this.assertOpen();
    this.hostGate?.(name, action);
    if (action.kind === "create") return (await this.create(action.definition)).view();
    if (action.kind === "migrate-in") {
      const names = { reserve: (def: Pick<VmDefinition, "name" | "uuid">) => this.reserveName(def), register: (def: VmDefinition) => this.registerIncoming(def) };
      return await performMigrateIn(names, action, extra as IncomingWork<unknown>, (vm, body) => this.underLock(vm, action, body));
    }
    const log = (extra as PassthroughLog | undefined) ?? this.host.log;
    const vm = this.get(name);
    // A VM whose definition cannot be read may still have a live qemu: the operator may stop it or ask qemu, nothing else.
    if (vm.broken && action.kind !== "stop" && action.kind !== "qmp") throw new VmStateConflict(name, "error", action.kind);
    refuseWhileOutcomeUnknown(vm, action);
    switch (action.kind) {
      case "qmp":
        return await runPassthrough(vm, action, this.host.config.qmpPassthrough, log, (send) => this.underLock(vm, action, send));
      case "backup":
      case "migrate":
      case "snapshot-delete": {
        if (!this.jobActions) throw new Error(`no handler for ${action.kind} jobs`);
        // A backup may run for hours, and the VM can still be stopped meanwhile (which ends it as failed).
        const hold: JobHold = action.kind !== "backup" ? (work) => this.underLock(vm, action, work) : (work) => work(actionRun(vm, action, new AbortController().signal));
        return await performJobAction(this.jobActions, vm, action, hold);
      }
      case "delete": {
        const view = vm.view();
        await this.underLock(vm, action, () => this.delete(vm));
        vm.publish("vm.deleted");
        return view;
      }
      case "takeover":
        await this.underLock(vm, action, () => this.ownership.takeover(vm));
        break;
      case "release-owner":
        await this.underLock(vm, action, () => this.ownership.release(vm));
        break;
      case "resolve-migration": {
        // The waiting migration acts on it under its own lock, and the answer waits for that to end;
        // a VM it removes answers with its last view.
        const view = vm.view();
        const migration = vm.lock.current;
        await vm.migrationOutcome.resolve(vm.name, action.outcome);
        await migration?.done.catch(() => {});
        return this.vms.get(name) === vm ? vm.view() : view;
      }
      case "start":
      case "shutdown":
      case "stop":
      case "reset":
      case "pause":
      case "resume":
        await this.underLock(vm, action, (run) => performLifecycle(this.context, vm, action, run));
        break;
      case "export-disk":
        return await this.underLock(vm, action, async (run) => {
          let made: DiskExport | undefined;
          await run.journaled(action, async () => void (made = await startExport(vm, this.host, action.disk, { tls: action.tls, speedMiBps: action.speedMiBps }, run.preempted)));
          return made!;
        });
      case "unexport-disk":
        await this.underLock(vm, action, () => endExport(vm, action.disk));
        break;
      case "snapshot-create":
      case "snapshot-revert": {
        const snapshots = this.snapshots;
        if (!snapshots) throw new Error("no handler for snapshots");
        // A revert that resumes a snapshot's memory starts a guest: the start's gate and admission first.
        const asStarted = (body: () => Promise<void>): Promise<void> => {
          this.hostGate?.(vm.name, { kind: "start" });
          return asStart(this.context, vm, body);
        };
        await this.underLock(vm, action, (run) => (action.kind === "snapshot-create" ? snapshots.create(vm, action, run) : snapshots.revert(vm, action, run, asStarted)));
        break;
      }
      case "add-disk":
      case "remove-disk":
      case "add-nic":
      case "remove-nic":
      case "set-balloon":
      case "change-cdrom":
      case "eject-cdrom":
      case "resize-disk":
      case "set-cloud-init":
      case "set-nic-filter":
      case "set-limits":
        await this.underLock(vm, action, (run) => performDeviceAction(this.context, vm, action, run));
        break;
      default:
        assertNever(action);
    }
    return vm.view();
  }

  /** Runs one action's handler under the VM's operation lock, in the action's name. */
  private underLock<T>(vm: Vm, action: Pick<PerformedAction, "kind">, handler: (run: ActionRun) => Promise<T>): Promise<T> {
    return vm.lock.run(action.kind, (preempted) => handler(actionRun(vm, action, preempted)));
  }

  /**
   * For a removal the guest did not answer in time: once it lets go (or qemu
   * ends), the same removal is performed again, which then frees the backend and
   * records the definition.
   */
  private finishRemovalLater(name: string, action: ActionOf<"remove-disk" | "remove-nic">): () => void {
    return () => void this.performQuietly(name, action);
  }

  /**
   * Performs an action the daemon decided on itself, retried while another
   * operation holds the VM; a failure is logged, a VM gone meanwhile ignored.
   */
  private async performQuietly(name: string, action: ViewAction): Promise<void> {
    for (let attempt = 0; attempt < 120 && !this.closing; attempt++) {
      try {
        await this.perform(name, action);
        return;
      } catch (err) {
        if (err instanceof VmBusy) {
          await sleep(500);
          continue;
        }
        if (!(err instanceof VmNotFound)) this.host.log.warn({ vm: name, err, action }, `${action.kind} failed`);
        return;
      }
    }
  }

  /** The VM's owner: this host's hold, or (fleet mode) whoever etcd names. */
  async ownerOf(vm: Vm): Promise<VmView["owner"]> {
    return await this.ownership.ownerOf(vm);
  }

  private assertOpen(): void {
    if (this.closing) throw new ShuttingDown("the daemon is shutting down");
  }

  /**
   * Daemon exit: refuse new work, let operations in flight reach a safe point (a
   * shutdown stops waiting for its guest; its journal lets the next daemon carry
   * it on), and leave every qemu running.
   */
  async close(): Promise<void> {
    this.closing = true;
    this.crashPolicy.cancelAll();
    this.host.stopping.abort();
    const inFlight = this.list().map((vm) => vm.lock.current?.done.catch(() => {}));
    await Promise.race([Promise.all(inFlight), sleep(CLOSE_GRACE_MS)]);
    for (const vm of this.vms.values()) vm.session?.detach();
  }
}

/** How long SIGTERM waits for operations in flight to reach a safe point. */
const CLOSE_GRACE_MS = 10_000;

/** Stands in for a definition that cannot be read, so the VM is still listed (state `error`). */
function placeholderDefinition(name: string): VmDefinition {
  return completeDefinition(vmCreateSchema.parse({ name, uuid: "00000000-0000-4000-8000-000000000000" }), new Date(0));
}

/** A promise and the function that resolves it (any number of times). */
function settledSignal(): { signal: () => void; signalled: Promise<void> } {
  let signal!: () => void;
  const signalled = new Promise<void>((resolve) => (signal = resolve));
  return { signal, signalled };
}
