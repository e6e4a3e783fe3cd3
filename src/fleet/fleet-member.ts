// This host as a member of a fleet coordinated through etcd: one lease per host,
// kept alive here, and `hosts/<id>` (the registry entry) under it. The VMs' owner
// keys are in owner-keys.ts; an `ha` VM's key is bound to this lease, so it
// vanishes with the host. etcd3 is loaded only here, and this file only when --etcd is set.
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { Etcd3, IOptions, Watcher } from "etcd3";
import type { Config } from "../config.js";
import { EtcdUnreachable, VmOwnedElsewhere } from "../errors.js";
import { OwnerKeys } from "./owner-keys.js";
export type { Ownership } from "./owner-keys.js";
import { boottimeNs } from "./boottime.js";
import type { FenceReport } from "./fence/fence-supervisor.js";

export interface FleetStatus {
  hostId: string;
  etcd: { endpoints: string[]; prefix: string; reachable: boolean; error?: string };
  lease?: { id: string; ttlSec: number; lastRenewedAt?: string };
  /** What the fence process says it protects (absent until it has spoken). */
  fence?: FenceReport;
}

/** A confirmed renewal: the boottime (ns, rounded down) the request was sent, before etcd acted on it. */
export interface LeaseRenewal {
  leaseId: string;
  sentAtBootNs: bigint;
  ttlSec: number;
}

/** How long one etcd request may take before etcd is called unreachable. */
const CALL_DEADLINE_MS = 2_000;

export class FleetMember extends EventEmitter {
  readonly hostId: string;
  readonly ttlSec: number;
  private readonly prefix: string;
  private leaseIdValue: string | undefined;
  private reachableValue = false;
  private lastError: string | undefined;
  private lastRenewedAt: Date | undefined;
  private lastRenewal: LeaseRenewal | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private registryTimer: NodeJS.Timeout | undefined;
  private renewing = false;
  /** A check of the lease was asked for while one ran: run another right after. */
  private renewAgain = false;
  private closed = false;
  /** Watches this host's registry entry: its deletion (a revoked lease) is noticed at once. */
  private entryWatcher: Watcher | undefined;
  /** The VMs' owner keys (src/fleet/owner-keys.ts). */
  readonly keys: OwnerKeys;
  /** The fence process's own word on what it protects, for status() and the registry entry. */
  fenceReport: (() => FenceReport) | undefined;
  /** Builds this host's registry entry; set by main once the inventory exists. */
  describeHost: (() => Promise<Record<string, unknown>>) | undefined;
  /** Names of the `ha` VMs this host owns, for re-binding their keys to a new lease. */
  ownedHa: () => string[] = () => [];

  private constructor(
    private readonly client: Etcd3,
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    super();
    this.hostId = config.hostId;
    this.ttlSec = config.leaseTtl;
    this.prefix = config.etcdPrefix;
    this.keys = new OwnerKeys(client, this.prefix, this.hostId, this.log, {
      ttlSec: this.ttlSec,
      requireLease: () => this.requireLease(),
      current: () => this.leaseIdValue,
      call: (fn) => this.call(fn),
    });
  }

  static async connect(config: Config, log: Logger): Promise<FleetMember> {
    const { Etcd3 } = await import("etcd3");
    const tls = config.etcdCa || config.etcdCert;
    const credentials = tls
      ? {
          // null: the system's CA store.
          rootCertificate: (config.etcdCa ? await readFile(config.etcdCa) : null) as Buffer,
          ...(config.etcdCert ? { certChain: await readFile(config.etcdCert), privateKey: await readFile(config.etcdKey!) } : {}),
        }
      : undefined;
    const client = new Etcd3({
      hosts: config.etcd!.split(","),
      ...(credentials ? { credentials } : {}),
      dialTimeout: CALL_DEADLINE_MS,
      // Unary calls get a deadline, so an unreachable etcd is an answer, not a hang.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
      // No per-endpoint circuit breaker: its default 5 s of refusing calls after three failures
      // would outlast a short etcd outage and delay lease renewals past a short TTL.
      faultHandling: { host: () => passThrough },
    });
    return new FleetMember(client, config, log.child({ component: "fleet" }));
  }

  get reachable(): boolean {
    return this.reachableValue;
  }

  get leaseId(): string | undefined {
    return this.leaseIdValue;
  }

  /** The last renewal etcd confirmed (for the fence process's heartbeat). */
  get renewal(): LeaseRenewal | undefined {
    return this.lastRenewal;
  }

  private key(rel: string): string {
    return this.prefix + rel;
  }

  /**
   * Joins the fleet: resumes this host's lease if it is still alive at etcd (a
   * restart inside the TTL keeps every `ha` key bound), or grants a new one; then
   * keeps it alive and the registry entry fresh. If etcd cannot be reached, keeps
   * trying in the background: single VMs keep running meanwhile.
   */
  async start(): Promise<void> {
    try {
      await this.establishLease();
    } catch (err) {
      this.markUnreachable(err);
      this.log.warn({ err: this.lastError }, "etcd unreachable at start; retrying");
    }
    const period = Math.max(200, Math.floor((this.ttlSec * 1000) / 4));
    this.keepaliveTimer = setInterval(() => void this.renew(), period);
    this.keepaliveTimer.unref();
    this.registryTimer = setInterval(() => void this.publishHost(), Math.max(1_000, Math.floor((this.ttlSec * 1000) / 2)));
    this.registryTimer.unref();
    void this.publishHost();
    void this.watchEntry();
  }

  /**
   * A revoked lease takes this host's registry entry with it at once; the next
   * keepalive would notice only up to TTL/4 later. So a deletion of the entry
   * makes the lease be checked now, and a lease found gone is a loss then.
   */
  private async watchEntry(): Promise<void> {
    try {
      this.entryWatcher = await this.client.watch().key(this.key(`hosts/${this.hostId}`)).create();
      this.entryWatcher.on("delete", () => {
        this.log.debug("registry entry deleted: checking the lease now");
        this.checkLeaseNow();
      });
      this.entryWatcher.on("error", (err: Error) => this.log.debug({ err: err.message }, "registry entry watch error"));
      if (this.closed) void this.entryWatcher.cancel();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "cannot watch this host's registry entry; a revoked lease is noticed at the next keepalive");
    }
  }

  private checkLeaseNow(): void {
    if (this.renewing) this.renewAgain = true;
    else void this.renew();
  }

  private async establishLease(): Promise<void> {
    const previous = await this.previousLeaseId();
    if (previous && (await this.keepaliveOnce(previous))) {
      this.leaseIdValue = previous;
      this.log.info({ lease: previous }, "resumed this host's lease");
      return;
    }
    if (previous && previous !== this.lostLease) this.leaseGone(previous, "not alive at etcd when this daemon came back");
    const sentAtBootNs = boottimeNs();
    const res = await this.client.leaseClient.leaseGrant({ TTL: this.ttlSec, ID: 0 });
    this.leaseIdValue = String(res.ID);
    this.confirmed({ leaseId: this.leaseIdValue, sentAtBootNs, ttlSec: Number(res.TTL) });
    this.log.info({ lease: this.leaseIdValue, ttlSec: this.ttlSec }, "granted a new host lease");
    await this.keys.rebindHa(this.ownedHa(), this.leaseIdValue!);
    await this.publishHost();
  }

  /** The lease named by this host's registry entry, if one is left in etcd. */
  private async previousLeaseId(): Promise<string | undefined> {
    const raw = await this.client.get(this.key(`hosts/${this.hostId}`)).string();
    if (!raw) return undefined;
    try {
      const lease = (JSON.parse(raw) as { lease?: unknown }).lease;
      return typeof lease === "string" ? lease : undefined;
    } catch {
      return undefined;
    }
  }

  /** One keepalive; resolves true if etcd confirmed the lease alive, false if it is gone. */
  private async keepaliveOnce(leaseId: string): Promise<boolean> {
    // Opening the stream waits for a connection: bounded too, or an unreachable etcd would stall renewals.
    let timer: NodeJS.Timeout | undefined;
    const opening = this.client.leaseClient.leaseKeepAlive();
    const stream = await Promise.race([
      opening,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no connection to etcd within ${CALL_DEADLINE_MS} ms`)), CALL_DEADLINE_MS);
      }),
    ])
      .catch((err: unknown) => {
        // A stream that opens after the deadline is closed at once.
        void opening.then((late) => (late.end(), (late as unknown as { cancel?: () => void }).cancel?.()), () => {});
        throw err;
      })
      .finally(() => clearTimeout(timer));
    const sentAtBootNs = boottimeNs();
    try {
      const res = await new Promise<{ ID: string; TTL: string }>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`keepalive unanswered after ${CALL_DEADLINE_MS} ms`)), CALL_DEADLINE_MS);
        stream.on("data", (d: { ID: string; TTL: string }) => (clearTimeout(t), resolve(d)));
        stream.on("error", (e: Error) => (clearTimeout(t), reject(e)));
        stream.write({ ID: leaseId });
      });
      if (Number(res.TTL) <= 0) return false;
      this.confirmed({ leaseId, sentAtBootNs, ttlSec: Number(res.TTL) });
      return true;
    } finally {
      stream.end();
      // A stream to an unreachable etcd would otherwise linger.
      (stream as unknown as { cancel?: () => void }).cancel?.();
    }
  }

  private confirmed(r: LeaseRenewal): void {
    this.lastRenewal = r;
    this.lastRenewedAt = new Date();
    if (!this.reachableValue) this.log.info("etcd reachable");
    this.reachableValue = true;
    this.lastError = undefined;
    this.emit("renewed", r);
  }

  private markUnreachable(err: unknown): void {
    const msg = (err as Error)?.message ?? String(err);
    if (this.reachableValue) this.log.warn({ err: msg }, "etcd unreachable");
    this.reachableValue = false;
    this.lastError = msg;
  }

  private async renew(): Promise<void> {
    if (this.renewing || this.closed) return;
    this.renewing = true;
    try {
      if (!this.leaseIdValue) {
        await this.establishLease();
        return;
      }
      if (!(await this.keepaliveOnce(this.leaseIdValue))) {
        // The lease expired or was revoked at etcd: every `ha` key of this host went with it.
        this.leaseGone(this.leaseIdValue, "expired or revoked at etcd");
        this.leaseIdValue = undefined;
        await this.establishLease();
      }
    } catch (err) {
      this.markUnreachable(err);
    } finally {
      this.renewing = false;
      if (this.renewAgain && !this.closed) {
        this.renewAgain = false;
        void this.renew();
      }
    }
  }

  private lostLease: string | undefined;

  /** A lease of this host is gone at etcd, and with it every `ha` key bound to it: said before anything else happens. */
  private leaseGone(leaseId: string, reason: string): void {
    this.lostLease = leaseId;
    this.log.error({ lease: leaseId, reason }, "host lease gone; its ha owner keys are gone");
    this.keys.leaseGone(leaseId);
    this.emit("lease-lost", leaseId, reason);
  }

  async publishHost(): Promise<void> {
    if (this.closed || !this.leaseIdValue || !this.describeHost) return;
    try {
      const fence = this.fenceReport?.();
      const entry = { ...(await this.describeHost()), ...(fence ? { fence } : {}), id: this.hostId, lease: this.leaseIdValue, updatedAt: new Date().toISOString() };
      await this.client.put(this.key(`hosts/${this.hostId}`)).value(JSON.stringify(entry)).lease(this.leaseIdValue);
    } catch (err) {
      this.log.debug({ err }, "registry entry not refreshed");
    }
  }

  /** Every live host's registry entry. */
  async hosts(): Promise<Record<string, unknown>[]> {
    const all = await this.call(() => this.client.getAll().prefix(this.key("hosts/")).strings());
    return Object.values(all)
      .flatMap((raw) => {
        try {
          return [JSON.parse(raw) as Record<string, unknown>];
        } catch {
          return [];
        }
      })
      .sort((a, b) => String(a.id).localeCompare(String(b.id)));
  }

  private requireLease(): string {
    if (!this.leaseIdValue || !this.reachableValue) throw new EtcdUnreachable(`etcd unreachable: ${this.lastError ?? "no host lease yet"}`);
    return this.leaseIdValue;
  }

  /** Runs one etcd call; a transport failure becomes EtcdUnreachable (503). */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof VmOwnedElsewhere || err instanceof EtcdUnreachable) throw err;
      this.markUnreachable(err);
      throw new EtcdUnreachable(`etcd unreachable: ${(err as Error).message}`);
    }
  }

  status(): FleetStatus {
    return {
      hostId: this.hostId,
      etcd: {
        endpoints: this.config.etcd!.split(","),
        prefix: this.prefix,
        reachable: this.reachableValue,
        ...(this.lastError ? { error: this.lastError } : {}),
      },
      ...(this.leaseIdValue
        ? { lease: { id: this.leaseIdValue, ttlSec: this.ttlSec, ...(this.lastRenewedAt ? { lastRenewedAt: this.lastRenewedAt.toISOString() } : {}) } }
        : {}),
      ...(this.fenceReport ? { fence: this.fenceReport() } : {}),
    };
  }

  /**
   * Daemon exit: stops renewing but neither revokes the lease nor releases keys, so a
   * restart within the TTL finds everything as it was.
   */
  close(): void {
    this.closed = true;
    clearInterval(this.keepaliveTimer);
    clearInterval(this.registryTimer);
    void this.entryWatcher?.cancel().catch(() => {});
    this.client.close();
  }
}

/** A fault-handling policy that just makes the call (etcd3 asks only for `execute`). */
const passThrough = {
  execute: <T>(fn: () => T | PromiseLike<T>): Promise<T> => Promise.resolve().then(fn),
} as unknown as ReturnType<NonNullable<NonNullable<IOptions["faultHandling"]>["host"]>>;
