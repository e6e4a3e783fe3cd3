// Host maintenance: while it lasts the host takes no new start and no incoming
// migration; an evacuation live-migrates every running VM away, N at a time, as
// one job with a line per VM. Each VM moves through the registry's own `migrate`
// action. The flag and the evacuation's plan and progress are recorded after
// every change, so a restarted daemon refuses starts at once and carries the
// evacuation on once its VMs are adopted (a migration the restart cut short is
// first settled by the journal's recovery).
import { setTimeout as sleep } from "node:timers/promises";
import { EvacuationIncomplete, HostInMaintenance, ValidationFailed } from "../../errors.js";
import type { Job, JobRegistry } from "../../jobs/job-registry.js";
import type { HostContext } from "../../vm/host-context.js";
import type { PerformedAction, VmRegistry } from "../../vm/vm-registry.js";
import { countItems, evacuationOutcome, nextToMigrate, placeVms, type EvacuationItem } from "./evacuation-plan.js";
import { moveVm, vmsToPlace } from "./evacuation-moves.js";
import { fleetDestinations, listedDestinations } from "./evacuation-destinations.js";
import { PeerClient } from "../../migration/peer-client.js";
import { MaintenanceStore, type EvacuationRecord, type MaintenanceRecord } from "./maintenance-store.js";

export interface EvacuateRequest {
  /** Fleet host ids, or API URLs (required outside fleet mode). */
  to?: string[];
  parallel: number;
  storage: "shared" | "copy";
  bandwidthMiBps?: number;
}

/** What GET /v1/host shows of maintenance. */
export interface MaintenanceView {
  maintenance: boolean;
  maintenanceSince?: string;
  evacuation?: { job: string; state: EvacuationRecord["state"]; startedAt: string; endedAt?: string } & ReturnType<typeof countItems>;
}

/** How long starts and arrivals admitted just before maintenance are waited for. */
const SETTLE_WAIT_MS = 120_000;
const POLL_MS = 200;

export class HostMaintenance {
  private record: MaintenanceRecord | undefined;
  private readonly store: MaintenanceStore;
  /** The evacuation running in this process: its job, and its end. */
  private running: { job: Job; ended: Promise<void>; cancelReason?: string } | undefined;
  /** An evacuation being planned (destinations asked, VMs listed): one at a time, and resume waits for it. */
  private planning: Promise<Job> | undefined;
  private saving: Promise<void> = Promise.resolve();
  /** The daemon is exiting: the evacuation stops where it is, unrecorded, for the next daemon to carry on. */
  private stopping = false;

  constructor(
    private readonly host: HostContext,
    private readonly registry: VmRegistry,
    private readonly jobs: JobRegistry,
  ) {
    this.store = new MaintenanceStore(host.config.stateDir);
  }

  /** Reads the record at start, before any VM is adopted: a host in maintenance refuses starts from its first moment. */
  async load(): Promise<void> {
    this.record = await this.store.read();
    if (this.record) this.host.log.warn({ since: this.record.since, evacuation: this.record.evacuation?.state }, "the host is in maintenance");
  }

  /** The registry's gate: while in maintenance a start or an incoming migration is refused (409). */
  refuse(name: string, action: PerformedAction): void {
    if (!this.record || (action.kind !== "start" && action.kind !== "migrate-in")) return;
    const what = action.kind === "start" ? "starts" : "incoming migrations";
    throw new HostInMaintenance(`this host is in maintenance since ${this.record.since}: it takes no ${what} (POST /v1/host/resume ends it)`, {
      vm: name,
      since: this.record.since,
      ...(this.record.evacuation ? { job: this.record.evacuation.job } : {}),
    });
  }

  view(): MaintenanceView {
    const r = this.record;
    if (!r) return { maintenance: false };
    const ev = r.evacuation;
    return {
      maintenance: true,
      maintenanceSince: r.since,
      ...(ev ? { evacuation: { job: ev.job, state: ev.state, startedAt: ev.startedAt, ...(ev.endedAt ? { endedAt: ev.endedAt } : {}), ...countItems(ev.items) } } : {}),
    };
  }

  /**
   * Enters maintenance (if not yet) and starts evacuating the VMs that run here;
   * answers with the job once the plan is made. A second evacuation while one runs
   * is refused; one after it ended tries again with what is still here.
   */
  async evacuate(req: EvacuateRequest): Promise<Job> {
    if (this.running) throw new HostInMaintenance(`an evacuation is already under way (job ${this.running.job.id})`, { job: this.running.job.id });
    if (this.planning) throw new HostInMaintenance("an evacuation is being planned");
    this.planning = this.plan(req);
    try {
      return await this.planning;
    } finally {
      this.planning = undefined;
    }
  }

  private async plan(req: EvacuateRequest): Promise<Job> {
    const fleet = this.host.fleet;
    if (!fleet && !req.to?.length) {
      const message = "required without fleet mode (--etcd): the destinations' API URLs";
      throw new ValidationFailed(`to: ${message}`, [{ field: "to", message }]);
    }
    const urls = req.to?.length && req.to.every((t) => /^https?:\/\//.test(t));
    const destinations = fleet && !urls ? await fleetDestinations(fleet, req.to) : await listedDestinations(req.to!, (url) => PeerClient.of(this.host, url));
    const entering = !this.record;
    const since = this.record?.since ?? new Date().toISOString();
    await this.save({ since, ...(this.record?.evacuation ? { evacuation: this.record.evacuation } : {}) }, true);
    if (entering) {
      this.host.bus.publish("host.maintenance-started", undefined, { since });
      // At once, not at the next refresh: other hosts' evacuations must not choose this one.
      void this.host.fleet?.publishHost();
    }
    // A start or incoming migration admitted just before the flag was set lands here: wait for it, then count it.
    await this.settleStartsAndArrivals();
    const items = placeVms(vmsToPlace(this.registry, req.storage), destinations);
    const job = this.jobs.create("evacuate", "");
    const evacuation: EvacuationRecord = {
      job: job.id,
      startedAt: job.startedAt,
      state: "running",
      parallel: req.parallel,
      storage: req.storage,
      ...(req.bandwidthMiBps ? { bandwidthMiBps: req.bandwidthMiBps } : {}),
      destinations,
      items,
    };
    await this.save({ since, evacuation }, true);
    this.host.log.info({ job: job.id, destinations, items }, "evacuation planned");
    this.launch(evacuation, job, new Set());
    return job;
  }

  /**
   * Ends maintenance. A running evacuation is stopped first: no further VM starts
   * to move, migrations under way are cancelled (each ends back here, or on its
   * destination if it was already switching over), then starts are taken again.
   */
  async resume(): Promise<MaintenanceView> {
    await this.planning?.catch(() => undefined);
    if (this.running) {
      this.running.cancelReason = "maintenance ended (POST /v1/host/resume) before it was moved";
      if (this.running.job.state === "running") this.running.job.cancel();
      await this.running.ended;
    }
    if (!this.record) return this.view();
    await this.saving;
    await this.store.clear();
    this.record = undefined;
    void this.host.fleet?.publishHost();
    this.host.bus.publish("host.maintenance-ended", undefined, {});
    this.host.log.info("maintenance ended: starts and incoming migrations are taken again");
    return this.view();
  }

  /**
   * Daemon exit (SIGTERM): no further VM starts to move, and what the migrations
   * under way come to is not recorded; the next daemon finds them `migrating` and
   * settles them as after a crash.
   */
  stop(): void {
    this.stopping = true;
  }

  /** After a restart, once every VM is adopted: carries on an evacuation the restart interrupted. */
  carryOn(): void {
    const ev = this.record?.evacuation;
    if (!ev || ev.state !== "running") return;
    const job = this.jobs.create("evacuate", "", ev.job);
    const interrupted = new Set<string>();
    for (const item of ev.items) {
      if (item.state !== "migrating") continue;
      // Its migration job died with the daemon; the journal's recovery settles where the guest is.
      interrupted.add(item.vm);
      item.state = "pending";
      delete item.job;
    }
    this.host.log.warn({ job: job.id, interrupted: [...interrupted] }, "carrying on the evacuation a restart interrupted");
    this.launch(ev, job, interrupted);
  }

  private launch(ev: EvacuationRecord, job: Job, interrupted: Set<string>): void {
    job.items = ev.items as unknown as Record<string, unknown>[];
    job.phase = "migrating";
    job.update(countItems(ev.items));
    const ended = this.run(ev, job, interrupted)
      .catch((err: unknown) => this.host.log.error({ err, job: job.id }, "the evacuation stopped on an unforeseen error"))
      .finally(() => {
        this.running = undefined;
      });
    this.running = { job, ended };
  }

  private async run(ev: EvacuationRecord, job: Job, interrupted: Set<string>): Promise<void> {
    const started = Date.now();
    const worker = async (): Promise<void> => {
      for (;;) {
        if (job.signal.aborted || this.stopping) return;
        const [item] = nextToMigrate(ev.items, ev.parallel);
        if (!item) return;
        item.state = "migrating";
        await this.changed(ev, job, item);
        const moves = { registry: this.registry, storage: ev.storage, ...(ev.bandwidthMiBps ? { bandwidthMiBps: ev.bandwidthMiBps } : {}) };
        const outcome = await moveVm(moves, item, interrupted.has(item.vm), job.signal, (id) => {
          item.job = id;
          return this.changed(ev, job, item);
        });
        // A migration cut short by the exit is not an outcome.
        if (this.stopping) return;
        Object.assign(item, outcome);
        await this.changed(ev, job, item);
      }
    };
    await Promise.all(Array.from({ length: ev.parallel }, worker));
    if (!this.stopping) await this.finish(ev, job, Date.now() - started);
  }

  private async finish(ev: EvacuationRecord, job: Job, ms: number): Promise<void> {
    const cancelled = job.signal.aborted;
    const why = this.running?.cancelReason ?? "the evacuation was cancelled before it was moved";
    for (const item of ev.items) if (item.state === "pending") Object.assign(item, { state: "skipped", reason: why });
    const outcome = cancelled ? "cancelled" : evacuationOutcome(ev.items);
    ev.state = outcome;
    ev.endedAt = new Date().toISOString();
    const counts = countItems(ev.items);
    job.update(counts);
    job.phase = "completed";
    await this.save({ ...this.record!, evacuation: ev });
    const result = { ...counts, durationMs: ms, destinations: ev.destinations };
    const left = ev.items.filter((i) => i.state !== "done");
    if (outcome === "succeeded") job.finish("succeeded", result);
    else {
      const detail = `${left.length} of ${ev.items.length} VMs stay on this host: ${left.map((i) => `${i.vm} (${i.reason ?? i.state})`).join("; ")}`;
      job.finish(cancelled ? "cancelled" : "failed", result, { code: EvacuationIncomplete.code, detail });
    }
    this.host.bus.publish("host.evacuation-finished", undefined, { job: job.id, state: outcome, ...counts, durationMs: ms });
    this.host.log.info({ job: job.id, outcome, ...counts, ms }, "evacuation ended; the host stays in maintenance until resumed");
  }

  /** Records an item's change and tells the job and the event stream. */
  private async changed(ev: EvacuationRecord, job: Job, item: EvacuationItem): Promise<void> {
    job.update(countItems(ev.items));
    this.host.bus.publish("host.evacuation-progress", undefined, {
      job: job.id,
      vm: item.vm,
      state: item.state,
      ...(item.destination ? { destination: item.destination } : {}),
      ...(item.reason ? { reason: item.reason } : {}),
    });
    await this.save({ ...this.record!, evacuation: ev });
  }

  /** Waits (bounded) for starts and incoming migrations that were admitted before the flag was set. */
  private async settleStartsAndArrivals(): Promise<void> {
    const deadline = Date.now() + SETTLE_WAIT_MS;
    const arriving = () => this.registry.list().some((vm) => vm.lock.current?.name === "start" || vm.lock.current?.name === "migrate-in");
    while (arriving() && Date.now() < deadline) await sleep(POLL_MS);
  }

  /**
   * Writes the record after the ones before it (workers save concurrently). A
   * write that must hold (entering maintenance, the plan) throws; a progress
   * write that fails is logged, and the next one carries the state.
   */
  private async save(record: MaintenanceRecord, mustHold = false): Promise<void> {
    this.record = record;
    const snapshot = JSON.parse(JSON.stringify(record)) as MaintenanceRecord;
    const write = this.saving.then(() => this.store.write(snapshot));
    this.saving = write.catch(() => {});
    try {
      await write;
    } catch (err) {
      if (mustHold) throw err;
      this.host.log.error({ err }, "the maintenance record could not be written");
    }
  }
}

