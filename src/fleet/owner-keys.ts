// The VMs' owner keys in etcd: `vms/<name>/owner` names the host that may run the
// VM, taken with a create-if-absent transaction whose revision is the fencing
// token. An `ha` VM's key is bound to the host lease (fleet-member.ts), so it
// vanishes with the host; an ordinary VM's key stays until released or taken over.
import type { Etcd3 } from "etcd3";
import type { Logger } from "pino";
import { setTimeout as sleep } from "node:timers/promises";
import { VmOwnedElsewhere } from "../errors.js";

/** Who owns a VM: the owner key's value plus its revision (the fencing token). */
export interface Ownership {
  host: string;
  /** The owner key's mod revision when it was last written for this host (decimal string, etcd's int64). */
  revision: string;
  since: string;
  ha: boolean;
}

/**
 * `vms/<name>/ha-holder`, bound to no lease: the last host that took the VM's key
 * as an `ha` key, and its lease TTL. It outlives the owner key when a lease is
 * revoked or expires, so the next host to take the key knows whose fence may
 * still have to act, and for how long at most.
 */
interface HaHolder {
  host: string;
  ttlSec: number;
}

/** What the key holds: the revision is etcd's, not part of the value. */
interface OwnerValue {
  host: string;
  since: string;
  ha: boolean;
}

/** What the keys need of the host lease: the lease an `ha` key is bound to, and etcd calls that mark it unreachable. */
export interface HostLease {
  /** This host's lease TTL, recorded with each `ha` key it takes. */
  readonly ttlSec: number;
  /** The lease now; throws EtcdUnreachable without one. */
  requireLease(): string;
  current(): string | undefined;
  call<T>(fn: () => Promise<T>): Promise<T>;
}

export class OwnerKeys {
  /** The lease each `ha` owner key this host holds is bound to, as etcd confirmed it. */
  private readonly keyLeases = new Map<string, string>();
  /** Called (and awaited) once an `ha` owner key is taken, before its qemu may start. */
  onHaKey: (() => Promise<void>) | undefined;

  constructor(
    private readonly client: Etcd3,
    private readonly prefix: string,
    private readonly hostId: string,
    private readonly log: Logger,
    private readonly lease: HostLease,
  ) {}

  /** The lease this host's `ha` owner key for `vm` is bound to, if it holds one. */
  keyLease(vm: string): string | undefined {
    return this.keyLeases.get(vm);
  }

  /** Records which lease an owner key just taken is bound to; an `ha` key is announced to the fence first. */
  private async heldUnder(vm: string, lease: string | undefined): Promise<void> {
    if (!lease) {
      this.keyLeases.delete(vm);
      return;
    }
    this.keyLeases.set(vm, lease);
    await this.onHaKey?.();
  }

  private ownerKey(vm: string): string {
    return `${this.prefix}vms/${vm}/owner`;
  }

  private holderKey(vm: string): string {
    return `${this.prefix}vms/${vm}/ha-holder`;
  }

  private async haHolder(vm: string): Promise<HaHolder | undefined> {
    const raw = await this.lease.call(() => this.client.get(this.holderKey(vm)).string());
    if (!raw) return undefined;
    try {
      const v = JSON.parse(raw) as Partial<HaHolder>;
      // Bounded as --lease-ttl is: a damaged record must not hold a start for ever, nor shorten the wait below a TTL.
      return typeof v.host === "string" && typeof v.ttlSec === "number" ? { host: v.host, ttlSec: Math.min(Math.max(v.ttlSec || 0, 5), 3600) } : undefined;
    } catch {
      return undefined;
    }
  }

  /** The holder record as a take of the key leaves it: this host for an `ha` key, none for an ordinary one. */
  private holderOp(vm: string, ha: boolean) {
    return ha
      ? this.client.put(this.holderKey(vm)).value(JSON.stringify({ host: this.hostId, ttlSec: this.lease.ttlSec } satisfies HaHolder))
      : this.client.delete().key(this.holderKey(vm));
  }

  /**
   * The key was last an `ha` key of another host, and is free now: its lease
   * expired or was revoked. etcd deletes a revoked lease's keys at once, before
   * that host's fence can have acted, so its copy may still run. That fence kills
   * by the last renewal it saw plus its TTL, which is before now plus its TTL:
   * waiting one TTL of that host before this host's qemu starts closes the window.
   */
  private async outwaitFence(vm: string, holder: HaHolder): Promise<void> {
    this.log.warn({ vm, previous: holder.host, waitSec: holder.ttlSec }, "the VM last ran as ha on another host: waiting its lease TTL for its fence before starting");
    await sleep(holder.ttlSec * 1000);
  }

  /** A lease of this host is gone at etcd: the `ha` keys bound to it went with it. */
  leaseGone(leaseId: string): void {
    for (const [vm, lease] of this.keyLeases) if (lease === leaseId) this.keyLeases.delete(vm);
  }

  /**
   * After a new lease: the `ha` keys this host still holds (value names this host)
   * are moved onto it, each in one transaction guarded by its value.
   */
  async rebindHa(names: string[], leaseId: string): Promise<void> {
    for (const name of names) {
      const key = this.ownerKey(name);
      const raw = await this.client.get(key).string();
      const v = raw ? parseOwner(raw) : undefined;
      if (!v || v.host !== this.hostId) continue;
      const res = await this.client.if(key, "Value", "==", raw!).then(this.client.put(key).value(raw!).lease(leaseId)).commit();
      if (res.succeeded) {
        this.log.info({ vm: name, lease: leaseId }, "ha owner key bound to the new lease");
        await this.heldUnder(name, leaseId);
      }
    }
  }

  /** The VM's owner as etcd has it, or undefined if nobody holds the key. */
  async owner(vm: string): Promise<Ownership | undefined> {
    const res = await this.lease.call(() => this.client.get(this.ownerKey(vm)).exec());
    const kv = res.kvs[0];
    if (!kv) return undefined;
    const v = parseOwner(kv.value.toString());
    return v ? { ...v, revision: String(kv.mod_revision) } : undefined;
  }

  /**
   * Takes the VM's owner key for this host, or finds it already ours (a restart, a
   * second start). Throws VmOwnedElsewhere naming the holder, or EtcdUnreachable.
   */
  async acquire(vm: string, ha: boolean): Promise<Ownership> {
    const key = this.ownerKey(vm);
    const value: OwnerValue = { host: this.hostId, since: new Date().toISOString(), ha };
    const lease = ha ? this.lease.requireLease() : undefined;
    const put = this.client.put(key).value(JSON.stringify(value));
    if (lease) put.lease(lease);
    const holder = await this.haHolder(vm);
    const res = await this.lease.call(() => this.client.if(key, "Create", "==", 0).then(put, this.holderOp(vm, ha)).else(this.client.get(key)).commit());
    if (res.succeeded) {
      const ownership = { ...value, revision: String(res.header.revision) };
      this.log.info({ vm, ...ownership }, "owner key taken");
      await this.heldUnder(vm, lease);
      if (holder && holder.host !== this.hostId) await this.outwaitFence(vm, holder);
      return ownership;
    }
    const kv = res.responses[0]?.response_range?.kvs[0];
    const current = kv ? parseOwner(kv.value.toString()) : undefined;
    if (!kv || !current) throw new VmOwnedElsewhere(vm, "unknown", kv ? String(kv.mod_revision) : "0");
    if (current.host !== this.hostId) throw new VmOwnedElsewhere(vm, current.host, String(kv.mod_revision));
    // Ours already. Its lease binding must match the VM's `ha` setting now.
    const boundLease = String(kv.lease ?? "0");
    const wantLease = lease ?? "0";
    if (boundLease !== wantLease || current.ha !== ha) {
      const raw = kv.value.toString();
      const next = { ...current, ha };
      const rebind = this.client.put(key).value(JSON.stringify(next));
      if (lease) rebind.lease(lease);
      const r = await this.lease.call(() => this.client.if(key, "Value", "==", raw).then(rebind).commit());
      if (!r.succeeded) return await this.acquire(vm, ha);
      await this.heldUnder(vm, lease);
      return { ...next, revision: String(r.header.revision) };
    }
    await this.heldUnder(vm, lease);
    return { ...current, revision: String(kv.mod_revision) };
  }

  /** The names of the VMs whose owner key names this host, read in one range request. */
  async ownedVms(): Promise<string[]> {
    const prefix = `${this.prefix}vms/`;
    const all = await this.lease.call(() => this.client.getAll().prefix(prefix).strings());
    return Object.entries(all).flatMap(([key, raw]) => {
      if (!key.endsWith("/owner")) return [];
      return parseOwner(raw)?.host === this.hostId ? [key.slice(prefix.length, -"/owner".length)] : [];
    });
  }

  /** Releases the key if it still names this host (a takeover elsewhere must not be undone). */
  async release(vm: string): Promise<boolean> {
    const key = this.ownerKey(vm);
    const res = await this.lease.call(() => this.client.get(key).exec());
    const kv = res.kvs[0];
    if (!kv || parseOwner(kv.value.toString())?.host !== this.hostId) return false;
    const del = await this.lease.call(() =>
      this.client.if(key, "Mod", "==", Number(kv.mod_revision)).then(this.client.delete().key(key), this.client.delete().key(this.holderKey(vm))).commit(),
    );
    if (del.succeeded) {
      this.log.info({ vm }, "owner key released");
      this.keyLeases.delete(vm);
    }
    return del.succeeded;
  }

  /** Operator's override: the key is written for this host whoever holds it. */
  async takeover(vm: string, ha: boolean): Promise<{ ownership: Ownership; previous?: Ownership }> {
    const previous = await this.owner(vm);
    const value: OwnerValue = { host: this.hostId, since: new Date().toISOString(), ha };
    const put = this.client.put(this.ownerKey(vm)).value(JSON.stringify(value));
    const lease = ha ? this.lease.requireLease() : undefined;
    if (lease) put.lease(lease);
    const res = await this.lease.call(() => put.exec());
    // The operator's statement that the previous owner is down: nobody's fence is waited for.
    await this.lease.call(async () => void (await this.holderOp(vm, ha).exec()));
    await this.heldUnder(vm, lease);
    return { ownership: { ...value, revision: String(res.header.revision) }, ...(previous ? { previous } : {}) };
  }

  /**
   * Migration switch-over, run by the destination before its `cont`: the key moves
   * from `fromHost` to this host in one compare-and-swap on the key's revision.
   * Throws (and leaves the key with the source) if the source no longer holds it.
   */
  async handover(vm: string, fromHost: string, fromRevision: string, ha: boolean): Promise<Ownership> {
    const key = this.ownerKey(vm);
    const res = await this.lease.call(() => this.client.get(key).exec());
    const kv = res.kvs[0];
    const current = kv ? parseOwner(kv.value.toString()) : undefined;
    if (current?.host === this.hostId) {
      await this.heldUnder(vm, ha && String(kv!.lease ?? "0") === this.lease.current() ? this.lease.current() : undefined);
      return { ...current, revision: String(kv!.mod_revision) };
    }
    // The source's fencing token must still be the key's revision: nobody took it meanwhile.
    if (!kv || !current || current.host !== fromHost || String(kv.mod_revision) !== fromRevision) {
      throw new VmOwnedElsewhere(vm, current?.host ?? "nobody", kv ? String(kv.mod_revision) : "0");
    }
    const value: OwnerValue = { host: this.hostId, since: new Date().toISOString(), ha };
    const put = this.client.put(key).value(JSON.stringify(value));
    const lease = ha ? this.lease.requireLease() : undefined;
    if (lease) put.lease(lease);
    const swap = await this.lease.call(() => this.client.if(key, "Mod", "==", Number(kv.mod_revision)).then(put, this.holderOp(vm, ha)).commit());
    if (!swap.succeeded) throw new VmOwnedElsewhere(vm, "changed during switch-over", String(kv.mod_revision));
    await this.heldUnder(vm, lease);
    this.log.info({ vm, from: fromHost, revision: String(swap.header.revision) }, "owner key handed over by migration");
    return { ...value, revision: String(swap.header.revision) };
  }
}

function parseOwner(raw: string): OwnerValue | undefined {
  try {
    const v = JSON.parse(raw) as Partial<OwnerValue>;
    if (typeof v.host !== "string") return undefined;
    return { host: v.host, since: String(v.since ?? ""), ha: v.ha === true };
  } catch {
    return undefined;
  }
}
