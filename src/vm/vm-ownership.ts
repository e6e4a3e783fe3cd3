// Fleet mode: a VM runs only on the host that holds its owner key in etcd. A
// start takes the key (and gives back one it took for a start that failed), a
// VM that no longer runs here gives it back, an adopted running VM takes it
// again, and the operator may take it over from a host known to be down. On a
// single host (no --etcd) every method is a no-op.
import { setTimeout as sleep } from "node:timers/promises";
import { NotInFleetMode, VmOwnedElsewhere } from "../errors.js";
import type { HostContext } from "./host-context.js";
import type { Vm, VmView } from "./vm.js";

/** What settleKeys needs of the registry. */
export interface StrayKeys {
  find(name: string): Vm | undefined;
  /** Reserves a name no VM has (undefined if one has it meanwhile); the function given back frees it. */
  reserve(name: string): (() => void) | undefined;
  /** Performs release-owner on the VM (under its lock; a VM busy or gone is left to what holds it). */
  release(name: string): Promise<void>;
}

export class VmOwnership {
  constructor(
    private readonly host: HostContext,
    /** True once the daemon is closing: background retries stop. */
    private readonly closing: () => boolean,
  ) {}

  /** A start runs only while this host holds the VM's owner key. A key taken for a start that then fails is given back. */
  async whileOwned(vm: Vm, run: () => Promise<void>): Promise<void> {
    const fleet = this.host.fleet;
    if (!fleet) return await run();
    const held = vm.owner;
    vm.holdOwner(await fleet.keys.acquire(vm.name, vm.definition.ha));
    try {
      await run();
    } catch (err) {
      if (!held && !vm.session) await this.release(vm);
      throw err;
    }
  }

  /** Gives the owner key back once the VM no longer runs here; a key etcd cannot be told about is left (safe: still ours). */
  async release(vm: Vm): Promise<void> {
    const fleet = this.host.fleet;
    if (!fleet || vm.session) return;
    try {
      await fleet.keys.release(vm.name);
      vm.holdOwner(undefined);
    } catch (err) {
      vm.log.warn({ err }, "owner key not released; it stays with this host");
    }
  }

  /**
   * After adoption: a VM running here must hold its owner key (found again after a
   * restart, or taken if absent). etcd down: retried until it answers.
   */
  async reclaim(vm: Vm): Promise<void> {
    const fleet = this.host.fleet;
    if (!fleet) return;
    for (let delay = 500; !this.closing() && vm.session; delay = Math.min(delay * 2, 5_000)) {
      try {
        vm.holdOwner(await fleet.keys.acquire(vm.name, vm.definition.ha));
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
  async takeover(vm: Vm): Promise<void> {
    const fleet = this.host.fleet;
    if (!fleet) throw new NotInFleetMode();
    const { ownership, previous } = await fleet.keys.takeover(vm.name, vm.definition.ha);
    vm.holdOwner(ownership);
    vm.log.warn({ previous, revision: ownership.revision }, "owner key taken over by the operator");
    vm.publish("vm.taken-over", { previous: previous?.host, revision: ownership.revision });
  }

  /**
   * After adoption, once etcd answers: a key etcd says this host holds for a VM
   * that no longer runs here is given back, so another host can start it without
   * a forced takeover. That covers a guest that powered itself off (or was
   * stopped, or fenced) while the daemon was away, and a VM deleted meanwhile
   * (its directory removed by hand). A VM that crashed keeps its key: its crash
   * policy may restart it here. Retried until etcd answers.
   */
  async settleKeys(vms: StrayKeys): Promise<void> {
    const fleet = this.host.fleet;
    if (!fleet) return;
    for (let delay = 1_000; !this.closing(); delay = Math.min(delay * 2, 10_000)) {
      try {
        for (const name of await fleet.keys.ownedVms()) {
          const vm = vms.find(name);
          if (vm) {
            if (!vm.session && !vm.broken && vm.lastExit?.reason !== "crashed") await vms.release(vm.name);
            continue;
          }
          // No VM of that name here: released with the name reserved, so a create cannot start one meanwhile.
          const unreserve = vms.reserve(name);
          if (!unreserve) continue;
          try {
            if (await fleet.keys.release(name)) this.host.log.info({ vm: name }, "owner key of a VM no longer defined here given back");
          } finally {
            unreserve();
          }
        }
        return;
      } catch (err) {
        this.host.log.warn({ err }, "cannot settle the owner keys this host holds; trying again");
        await sleep(delay);
      }
    }
  }

  /**
   * The host's lease is gone, and with it the owner keys of its ha VMs, which were
   * bound to it. The fence kills their qemus now; their exits are recorded as fenced.
   */
  leaseLost(vms: Vm[]): void {
    for (const vm of vms) {
      if (!vm.owner?.ha) continue;
      vm.holdOwner(undefined);
      if (vm.session) vm.expectExit("fenced");
    }
  }

  /**
   * The VM's owner: this host's hold, or (fleet mode) whoever etcd names. Not asked
   * while etcd is known unreachable: a GET must not wait out the etcd deadline.
   */
  async ownerOf(vm: Vm): Promise<VmView["owner"]> {
    const fleet = this.host.fleet;
    if (vm.owner || !fleet?.reachable) return vm.owner;
    return await fleet.keys.owner(vm.name).catch(() => undefined);
  }
}
