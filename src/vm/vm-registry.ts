// The registry of this host's VMs, and the one place every VmAction is carried
// out (one exhaustive switch). HTTP routes and the CLI only produce actions.
import { NotInFleetMode, UuidInUse, VmBusy, VmExists, VmNotFound, VmOwnedElsewhere, VmStateConflict, ShuttingDown } from "../errors.js";
import { completeDefinition, type VmDefinition, vmCreateSchema } from "../definition/vm-definition.js";
import type { HostContext } from "./host-context.js";
import { createVmOnDisk } from "./operations/create-vm.js";
import { pauseVm, resetVm, resumeVm } from "./operations/guest-controls.js";
import { shutdownVm, DEFAULT_SHUTDOWN_TIMEOUT_SEC } from "./operations/shutdown-vm.js";
import { startVm } from "./operations/start-vm.js";
import { stopVm } from "./operations/stop-vm.js";
import { changeCdrom } from "./operations/change-cdrom.js";
import { addDisk, addNic, DEFAULT_RELEASE_TIMEOUT_SEC, findNic, recoverHotplug, removeDisk, removeNic } from "./operations/hotplug.js";
import { setBalloonTarget } from "./guest/guest-balloon.js";
import { resizeDisk } from "./operations/resize-disk.js";
import { setCloudInit } from "./guest/cloud-init-seed.js";
import { CrashPolicy } from "./crash-policy.js";
import { MemoryAdmission } from "../host/memory-admission.js";
import { Vm, type VmView } from "./vm.js";
import { adoptVm } from "./vm-adoption.js";
import type { JournalEntry } from "../store/operation-journal.js";
import { findQemuProcesses, type QemuProcessInfo } from "../qemu/qemu-process.js";
import { assertNever, type ActionOf, type VmAction } from "../definition/vm-action.js";
import type { z } from "zod";
import { setTimeout as sleep } from "node:timers/promises";

export type { VmAction };

/**
 * The actions perform carries out. Create, delete and takeover have methods of
 * their own here; backup, migration and the QMP pass-through run in their own
 * modules under the VM's lock or job, named by their kind.
 */
export type PerformedAction = Exclude<VmAction, { kind: "create" | "delete" | "takeover" | "backup" | "migrate" | "migrate-in" | "qmp" | "adopt" }>;

/** Each side's recovery of a migration a restart cut short (src/migration/). */
export interface MigrationRecovery {
  out(vm: Vm, action: ActionOf<"migrate">, entry: JournalEntry): Promise<void>;
  in(vm: Vm, entry: JournalEntry): Promise<void>;
}

export class VmRegistry {
  private readonly vms = new Map<string, Vm>();
  /** Names being created (or received) right now, with their uuids, so two creates of one name or uuid cannot race. */
  private readonly creating = new Map<string, string>();
  private readonly crashPolicy: CrashPolicy;
  private closing = false;

  constructor(readonly host: HostContext) {
    this.crashPolicy = new CrashPolicy(host.log, (vm) => this.perform(vm.name, { kind: "start" }));
    this.memory = new MemoryAdmission(host.config.reserveMemory, () =>
      this.list().flatMap((vm) => (vm.session ? [{ name: vm.name, memoryMiB: vm.definition.memoryMiB, pid: vm.session.pid }] : [])),
    );
  }

  /** Starts are admitted against the host's free memory (src/host/memory-admission.ts). */
  private readonly memory: MemoryAdmission;

  /**
   * Loads every stored VM, then adopts the qemu of each in parallel. Resolves once
   * every VM is registered; `adopted` resolves once every adoption has settled.
   * A VM still being adopted shows state `unknown` and refuses operations (busy),
   * so one hung qemu never holds up the others or the API.
   */
  async load(): Promise<void> {
    for (const stored of await this.host.store.list()) {
      if ("error" in stored) {
        this.host.log.error({ vm: stored.name, reason: stored.error }, "VM definition unreadable");
        const vm = this.newVm(placeholderDefinition(stored.name));
        vm.broken = stored.error;
        this.vms.set(stored.name, vm);
        continue;
      }
      this.vms.set(stored.name, this.newVm(stored.definition));
    }
    this.adopted = Promise.all([...this.vms.values()].map((vm) => this.adopt(vm))).then(() => undefined);
  }

  adopted: Promise<void> = Promise.resolve();
  /** Finishes or rolls back a migration a restart cut short, each by its own side (set by main). */
  recoverMigration: MigrationRecovery | undefined;

  private async adopt(vm: Vm): Promise<void> {
    let interrupted: JournalEntry | undefined;
    try {
      interrupted = await vm.lock.run("adopt", () => adoptVm(vm));
    } catch (err) {
      vm.log.error({ err }, "adoption failed; the VM is left as it is");
      return;
    }
    vm.publish("vm.adopted", { state: vm.state(), pid: vm.session?.pid });
    if (vm.session && this.host.fleet) void this.reclaimOwnership(vm);
    if (vm.lastExit?.reason === "crashed" && !vm.session && !interrupted) this.crashPolicy.onCrash(vm);
    if (interrupted) this.recover(vm, interrupted).catch((err) => vm.log.error({ err, action: interrupted.action }, "finishing the interrupted operation failed"));
  }

  /**
   * After a restart: the operation a journal entry says was cut short is finished
   * or undone, under the VM's lock in the action's own name.
   */
  private async recover(vm: Vm, entry: JournalEntry): Promise<void> {
    const { action } = entry;
    vm.log.info({ action }, "finishing the interrupted operation");
    switch (action.kind) {
      case "shutdown": {
        // The guest is given what was left of its time, and at least a second.
        if (!vm.session) return;
        const elapsed = (Date.now() - Date.parse(entry.startedAt)) / 1000;
        const timeoutSec = Math.max(1, Math.ceil((action.timeoutSec ?? DEFAULT_SHUTDOWN_TIMEOUT_SEC) - elapsed));
        await this.perform(vm.name, { kind: "shutdown", timeoutSec });
        return;
      }
      case "stop":
        if (vm.session) await this.perform(vm.name, action);
        return;
      case "add-disk":
      case "remove-disk":
      case "add-nic":
      case "remove-nic": {
        // Settled by what qemu has now (operations/hotplug.ts).
        const finish = this.finishRemovalLater(vm.name, removalOf(entry));
        await vm.lock.run(action.kind, () => recoverHotplug(vm, this.host, entry, finish));
        return;
      }
      case "change-cdrom":
      case "eject-cdrom":
      case "resize-disk":
        // Done again in full: the disc may or may not have changed; growing to the size asked for is a no-op if reached.
        await this.perform(vm.name, action);
        return;
      case "migrate": {
        const recover = this.recoverMigration;
        if (recover) await vm.lock.run("migrate", () => recover.out(vm, action, entry));
        return;
      }
      case "migrate-in": {
        const recover = this.recoverMigration;
        if (recover) await vm.lock.run("migrate-in", () => recover.in(vm, entry));
        return;
      }
      // Undone by the adoption itself.
      case "start":
      // Never journaled: nothing is left half done.
      case "create":
      case "delete":
      case "reset":
      case "pause":
      case "resume":
      case "set-balloon":
      case "set-cloud-init":
      case "backup":
      case "takeover":
      case "qmp":
      case "adopt":
        return;
      default:
        assertNever(action);
    }
  }

  private newVm(def: VmDefinition): Vm {
    const log = this.host.log.child({ vm: def.name });
    return new Vm(def, this.host.store.paths(def.name), log, this.host.bus, (vm) => this.crashPolicy.onCrash(vm), {
      consoleLogMax: this.host.config.consoleLogMax,
      maxConsoleViewers: this.host.config.maxConsoleViewers,
    });
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

  async create(req: z.output<typeof vmCreateSchema>): Promise<Vm> {
    this.assertOpen();
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
  registerIncoming(def: VmDefinition): Vm {
    this.assertOpen();
    this.assertFree(def);
    const vm = this.newVm(def);
    this.vms.set(def.name, vm);
    return vm;
  }

  /** Reserves a name and uuid while an incoming VM's directory is made; the returned function releases them. */
  reserveName(def: Pick<VmDefinition, "name" | "uuid">): () => void {
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

  async delete(name: string): Promise<void> {
    this.assertOpen();
    const vm = this.get(name);
    if (vm.broken) throw new VmStateConflict(name, "error", "delete");
    await vm.lock.run("delete", async () => {
      if (vm.session) throw new VmStateConflict(name, vm.settledState(), "delete");
      await this.releaseOwnership(vm);
      await this.host.store.remove(name);
      this.vms.delete(name);
      this.host.qemuUsers.forget(name);
    });
    vm.publish("vm.deleted");
  }

  /** Carries out one action on one VM under its operation lock; resolves when it is done. */
  async perform(name: string, action: PerformedAction): Promise<VmView> {
    this.assertOpen();
    const vm = this.get(name);
    // A VM whose definition cannot be read may still have a live qemu: the operator may stop it, nothing else.
    if (vm.broken && action.kind !== "stop") throw new VmStateConflict(name, "error", action.kind);
    switch (action.kind) {
      case "start":
        await vm.lock.run("start", () => this.withMemory(vm, () => this.withOwnership(vm, () => startVm(vm, this.host))));
        break;
      case "shutdown": {
        const timeoutSec = action.timeoutSec ?? DEFAULT_SHUTDOWN_TIMEOUT_SEC;
        await vm.lock.run("shutdown", async (preempted) => {
          try {
            await shutdownVm(vm, timeoutSec, preempted, this.host.stopping.signal);
          } finally {
            // Also for a VM already down (the guest powered off): its key goes back once nothing runs.
            await this.releaseOwnership(vm);
          }
        });
        break;
      }
      case "stop":
        await vm.lock.run("stop", async () => {
          try {
            await stopVm(vm);
          } finally {
            await this.releaseOwnership(vm);
          }
        });
        break;
      case "reset":
        await vm.lock.run("reset", () => resetVm(vm));
        break;
      case "pause":
        await vm.lock.run("pause", () => pauseVm(vm));
        break;
      case "resume":
        await vm.lock.run("resume", () => resumeVm(vm));
        break;
      case "change-cdrom":
        await vm.lock.run("change-cdrom", () => changeCdrom(vm, this.host, action.image));
        break;
      case "set-cloud-init":
        await vm.lock.run("set-cloud-init", () => setCloudInit(vm, this.host, action.cloudInit));
        break;
      case "eject-cdrom":
        await vm.lock.run("eject-cdrom", () => changeCdrom(vm, this.host, undefined));
        break;
      case "resize-disk":
        await vm.lock.run("resize-disk", () => resizeDisk(vm, this.host, action.disk, action.sizeGiB));
        break;
      case "add-disk":
        await vm.lock.run("add-disk", () => addDisk(vm, this.host, action.disk));
        break;
      case "remove-disk": {
        const timeoutSec = action.timeoutSec ?? DEFAULT_RELEASE_TIMEOUT_SEC;
        const finish = this.finishRemovalLater(name, { kind: "remove-disk", disk: action.disk });
        await vm.lock.run("remove-disk", () => removeDisk(vm, this.host, action.disk, timeoutSec, finish));
        break;
      }
      case "add-nic":
        await vm.lock.run("add-nic", () => addNic(vm, this.host, action.nic));
        break;
      case "remove-nic": {
        const timeoutSec = action.timeoutSec ?? DEFAULT_RELEASE_TIMEOUT_SEC;
        // By MAC from here on: an index could name another NIC by the time the guest lets go.
        const mac = vm.definition.nics[findNic(vm, action.nic)]!.mac;
        const finish = this.finishRemovalLater(name, { kind: "remove-nic", nic: mac });
        await vm.lock.run("remove-nic", () => removeNic(vm, this.host, action.nic, timeoutSec, finish));
        break;
      }
      case "set-balloon":
        await vm.lock.run("set-balloon", () => setBalloonTarget(vm, action.targetMiB));
        break;
      default:
        assertNever(action);
    }
    return vm.view();
  }

  /**
   * For a removal the guest did not answer in time: once it lets go (or qemu
   * ends), the same removal is performed again, which then frees the backend and
   * records the definition. Retried while another operation holds the VM.
   */
  private finishRemovalLater(name: string, action: PerformedAction): () => void {
    return () =>
      void (async () => {
        for (let attempt = 0; attempt < 120 && !this.closing; attempt++) {
          try {
            await this.perform(name, action);
            return;
          } catch (err) {
            if (err instanceof VmBusy) {
              await sleep(500);
              continue;
            }
            this.host.log.warn({ vm: name, err, action }, "finishing a pending device removal failed");
            return;
          }
        }
      })();
  }

  /**
   * A start runs only with its memory admitted, claimed until it ends; a VM
   * already running goes straight on to be refused by the start itself.
   */
  private async withMemory(vm: Vm, run: () => Promise<void>): Promise<void> {
    if (vm.session) return await run();
    const release = await this.memory.admit(vm.name, vm.definition.memoryMiB);
    try {
      await run();
    } finally {
      release();
    }
  }

  /** Fleet mode: a start runs only while this host holds the VM's owner key. A key
   * taken for a start that then fails is given back.
   */
  private async withOwnership(vm: Vm, run: () => Promise<void>): Promise<void> {
    const fleet = this.host.fleet;
    if (!fleet) return await run();
    const held = vm.owner;
    vm.owner = await fleet.acquire(vm.name, vm.definition.ha);
    try {
      await run();
    } catch (err) {
      if (!held && !vm.session) await this.releaseOwnership(vm);
      throw err;
    }
  }

  /** Gives the owner key back once the VM no longer runs here; a key etcd cannot be told about is left (safe: still ours). */
  private async releaseOwnership(vm: Vm): Promise<void> {
    const fleet = this.host.fleet;
    if (!fleet || vm.session) return;
    try {
      await fleet.release(vm.name);
      vm.owner = undefined;
    } catch (err) {
      vm.log.warn({ err }, "owner key not released; it stays with this host");
    }
  }

  /**
   * After adoption: a VM running here must hold its owner key (found again after a
   * restart, or taken if absent). etcd down: retried until it answers.
   */
  private async reclaimOwnership(vm: Vm): Promise<void> {
    const fleet = this.host.fleet!;
    for (let delay = 500; !this.closing && vm.session; delay = Math.min(delay * 2, 5_000)) {
      try {
        vm.owner = await fleet.acquire(vm.name, vm.definition.ha);
        return;
      } catch (err) {
        if (err instanceof VmOwnedElsewhere) {
          vm.log.error({ owner: err.fields.owner }, "a VM running here is owned by another host");
          vm.publish("vm.owner-conflict", { owner: String(err.fields.owner), revision: String(err.fields.revision) });
          return;
        }
        await sleep(delay);
      }
    }
  }

  /**
   * The operator's override when the owning host is down for sure: the key is
   * written for this host, whoever held it. Logged and evented.
   */
  async takeover(name: string): Promise<VmView> {
    this.assertOpen();
    const vm = this.get(name);
    const fleet = this.host.fleet;
    if (!fleet) throw new NotInFleetMode();
    const { ownership, previous } = await fleet.takeover(name, vm.definition.ha);
    vm.owner = ownership;
    vm.log.warn({ previous, revision: ownership.revision }, "owner key taken over by the operator");
    vm.publish("vm.taken-over", { previous: previous?.host, revision: ownership.revision });
    return vm.view();
  }

  /**
   * The VM's owner: this host's hold, or (fleet mode) whoever etcd names. Not asked
   * while etcd is known unreachable: a GET must not wait out the etcd deadline.
   */
  async ownerOf(vm: Vm): Promise<VmView["owner"]> {
    const fleet = this.host.fleet;
    if (vm.owner || !fleet?.reachable) return vm.owner;
    return await fleet.owner(vm.name).catch(() => undefined);
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

/** The removal a device change's recovery finishes later if the guest has not yet let go. */
function removalOf({ action, facts }: JournalEntry): ActionOf<"remove-disk" | "remove-nic"> {
  if (action.kind === "add-disk") return { kind: "remove-disk", disk: action.disk.name };
  if (action.kind === "remove-disk") return action;
  if (action.kind === "remove-nic") return action;
  return { kind: "remove-nic", nic: facts.nic?.mac ?? (action.kind === "add-nic" ? action.nic.mac ?? "" : "") };
}
