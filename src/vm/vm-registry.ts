// The registry of this host's VMs, and the one place every VmAction is carried
// out (one exhaustive switch). HTTP routes and the CLI only produce actions.
import { VmExists, VmNotFound, VmStateConflict, ShuttingDown } from "../errors.js";
import { completeDefinition, type VmDefinition, vmCreateSchema } from "./definition.js";
import type { HostContext } from "./host-context.js";
import { createVmOnDisk } from "./operations/create-vm.js";
import { pauseVm, resetVm, resumeVm } from "./operations/guest-controls.js";
import { shutdownVm, DEFAULT_SHUTDOWN_TIMEOUT_SEC } from "./operations/shutdown-vm.js";
import { startVm } from "./operations/start-vm.js";
import { stopVm } from "./operations/stop-vm.js";
import { CrashPolicy } from "./crash-policy.js";
import { Vm, type VmView } from "./vm.js";
import { adoptVm } from "./vm-adoption.js";
import type { z } from "zod";

export type VmAction =
  | { kind: "start" }
  | { kind: "shutdown"; timeoutSec?: number }
  | { kind: "stop" }
  | { kind: "reset" }
  | { kind: "pause" }
  | { kind: "resume" };

export class VmRegistry {
  private readonly vms = new Map<string, Vm>();
  /** Names being created right now, so two creates of one name cannot race. */
  private readonly creating = new Set<string>();
  private readonly crashPolicy: CrashPolicy;
  private closing = false;

  constructor(readonly host: HostContext) {
    this.crashPolicy = new CrashPolicy(host.log, (vm) => this.perform(vm.name, { kind: "start" }));
  }

  /** Loads every stored VM and adopts the qemu of each that was running, all in parallel. */
  async load(): Promise<void> {
    for (const stored of await this.host.store.list()) {
      if ("error" in stored) {
        this.host.log.error({ vm: stored.name, reason: stored.error }, "VM skipped: definition unreadable");
        continue;
      }
      this.vms.set(stored.name, this.newVm(stored.definition));
    }
    await Promise.all([...this.vms.values()].map((vm) => adoptVm(vm, this.host)));
  }

  private newVm(def: VmDefinition): Vm {
    const log = this.host.log.child({ vm: def.name });
    return new Vm(def, this.host.store.paths(def.name), log, this.host.bus, (vm) => this.crashPolicy.onCrash(vm));
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
    if (this.vms.has(req.name) || this.creating.has(req.name)) throw new VmExists(req.name);
    this.creating.add(req.name);
    try {
      const def = completeDefinition(req);
      await createVmOnDisk(def, this.host);
      const vm = this.newVm(def);
      this.vms.set(def.name, vm);
      vm.publish("vm.created", { state: vm.state() });
      return vm;
    } finally {
      this.creating.delete(req.name);
    }
  }

  async delete(name: string): Promise<void> {
    this.assertOpen();
    const vm = this.get(name);
    await vm.lock.run("delete", async () => {
      if (vm.session) throw new VmStateConflict(name, vm.settledState(), "delete");
      await this.host.store.remove(name);
      this.vms.delete(name);
    });
    vm.publish("vm.deleted");
  }

  /** Carries out one action on one VM under its operation lock; resolves when it is done. */
  async perform(name: string, action: VmAction): Promise<VmView> {
    this.assertOpen();
    const vm = this.get(name);
    switch (action.kind) {
      case "start":
        await vm.lock.run("start", () => startVm(vm, this.host));
        break;
      case "shutdown": {
        const timeoutSec = action.timeoutSec ?? DEFAULT_SHUTDOWN_TIMEOUT_SEC;
        await vm.lock.run("shutdown", (preempted) => shutdownVm(vm, timeoutSec, preempted));
        break;
      }
      case "stop":
        await vm.lock.run("stop", () => stopVm(vm));
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
      default:
        assertNever(action);
    }
    return vm.view();
  }

  private assertOpen(): void {
    if (this.closing) throw new ShuttingDown("the daemon is shutting down");
  }

  /** Daemon exit: refuse new work, let operations in flight finish, leave every qemu running. */
  async close(): Promise<void> {
    this.closing = true;
    this.crashPolicy.cancelAll();
    await Promise.all(this.list().map((vm) => vm.lock.current?.done.catch(() => {})));
    for (const vm of this.vms.values()) vm.session?.detach();
  }
}

function assertNever(x: never): never {
  throw new Error(`unhandled action ${JSON.stringify(x)}`);
}
