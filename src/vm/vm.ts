// One VM as the daemon sees it: its stored definition, its live qemu (if any),
// the operation in flight and how its last run ended. Its state is derived from
// those facts on every read, never kept as a field to be synchronised by hand.
// Beside it: how it is shown (vm-view.ts), its two logs (vm-logs.ts), how a qemu's
// end is named and recorded (vm-exit.ts), and the devices awaiting release
// (pending-removals.ts).
import { endAllExports } from "./backups/disk-export.js";
import type { Logger } from "pino";
import type { EventBus, PayloadArg } from "../events/event-bus.js";
import type { BusEventType, EventPayload } from "../events/event-catalogue.js";
import type { Job } from "../jobs/job-registry.js";
import { removeVmTaps } from "../net/tap-devices.js";
import { OperationJournal } from "../store/operation-journal.js";
import type { LastExit } from "../store/runtime-store.js";
import { lastExitOf, recordExit, takeFencedRecord } from "./vm-exit.js";
import type { VmPaths } from "../store/vm-paths.js";
import type { DefinitionStore } from "../store/definition-store.js";
import type { VmDefinition } from "../definition/vm-definition.js";
import type { Ownership } from "../fleet/fleet-member.js";
import { OperationLock } from "./operation-lock.js";
import { ConsoleHub, DEFAULT_MAX_CONSOLE_VIEWERS } from "./console/console-hub.js";
import { VmLogs } from "./vm-logs.js";
import { PendingRemovals } from "./pending-removals.js";
import { renderView, type VmView } from "./vm-view.js";
import { countQemuCrash } from "../metrics/metric-hooks.js";
import type { QemuSession, SessionExit } from "./qemu-session.js";
import { deriveState, type VmState } from "./vm-state.js";
import { MigrationOutcome } from "./migration-outcome.js";
import { readAppliedLimits, releaseLimits } from "../limits/vm-limits.js";
import type { VmLimits } from "../limits/limits-schema.js";
import { FactFreshness } from "./fact-freshness.js";
import { QemuUnresponsive } from "../errors.js";

export type { VmView };

export class Vm {
  readonly lock: OperationLock;
  readonly journal: OperationJournal;
  /** The serial console's viewers and its one connection to qemu. */
  readonly console: ConsoleHub;
  /** The serial console's log and qemu's own, each kept to its newest bytes. */
  readonly logs: VmLogs;
  /** Devices whose hot-removal waits for the guest (hot-plug's to change; they all end with qemu). */
  readonly removals = new PendingRemovals();
  /** Set while a migration out does not know its outcome (the guest held paused here). */
  readonly migrationOutcome = new MigrationOutcome(() => this.publishState("outcome-unknown"));
  /** Whether qemu's status, the limits as applied and the balloon may have changed since last read. */
  readonly facts = new FactFreshness();
  // What the VM is, each changed only through the methods below (called from the
  // action handlers and adoption); everything else reads it.
  private currentDefinition: VmDefinition;
  private currentSession: QemuSession | undefined;
  private currentLastExit: LastExit | undefined;
  /** Set by the daemon's own stop/shutdown so that the coming exit is not taken for a crash. */
  private expectedExit: string | undefined;
  /** Why this VM cannot be managed normally (e.g. its definition is unreadable); shown as state `error`. */
  private brokenReason: string | undefined;
  /** The last failure to record this VM's state on disk, shown until a write succeeds. */
  private stateWriteError: string | undefined;
  /** The job working on this VM (a backup, a migration), shown with it. */
  private currentJob: Job | undefined;
  /** Fleet mode: this host's hold on the VM's owner key in etcd, while it has one. */
  private currentOwner: Ownership | undefined;
  /** The guest's memory as the balloon last reported it (query-balloon or BALLOON_CHANGE), in bytes. */
  private balloonBytes: number | undefined;
  /** The limits qemu held when last read back (refresh); undefined while no qemu runs. */
  private appliedLimits: VmLimits | undefined;
  /** The read of qemu's and the host's facts under way: concurrent views share it. */
  private reading: Promise<void> | undefined;
  private readonly exitWaiters = new Set<() => void>();
  /** The state the last `vm.state` event announced. */
  private publishedState: VmState | undefined;

  constructor(
    definition: VmDefinition,
    readonly paths: VmPaths,
    readonly log: Logger,
    private readonly bus: EventBus,
    /** Told of every end of a qemu, after it is recorded: a crash (the crash policy), a guest power-off (its owner key). */
    private readonly onExit: (vm: Vm, reason: string) => void,
    limits: { consoleLogMax?: number; maxConsoleViewers?: number } = {},
  ) {
    this.currentDefinition = definition;
    this.lock = new OperationLock(definition.name, {
      started: (operation) => {
        this.facts.changed();
        this.publish("operation.started", { operation });
        this.publishState(operation);
      },
      // The state first: a client that sees the operation end already knows where it left the VM.
      ended: (operation, err) => {
        this.facts.changed();
        this.publishState(operation);
        const e = err as { code?: unknown; message?: unknown } | undefined;
        this.publish("operation.ended", {
          operation,
          result: err === undefined ? "ok" : "failed",
          ...(err === undefined ? {} : { error: { code: typeof e?.code === "string" ? e.code : undefined, message: String(e?.message ?? err) } }),
        });
      },
    });
    this.journal = new OperationJournal(paths.journal);
    this.console = new ConsoleHub(this, limits.maxConsoleViewers ?? DEFAULT_MAX_CONSOLE_VIEWERS);
    this.logs = new VmLogs(paths, log, limits.consoleLogMax);
  }

  get name(): string {
    return this.definition.name;
  }

  get definition(): VmDefinition {
    return this.currentDefinition;
  }

  /** The VM's live qemu, while one runs. */
  get session(): QemuSession | undefined {
    return this.currentSession;
  }

  /** How the last run ended. */
  get lastExit(): LastExit | undefined {
    return this.currentLastExit;
  }

  get broken(): string | undefined {
    return this.brokenReason;
  }

  get job(): Job | undefined {
    return this.currentJob;
  }

  get owner(): Ownership | undefined {
    return this.currentOwner;
  }

  /** The guest's memory as the balloon last reported it, in bytes. */
  get balloonActual(): number | undefined {
    return this.balloonBytes;
  }

  /** Writes a changed definition to the store, then holds it: the next start has it. */
  async changeDefinition(store: Pick<DefinitionStore, "update">, change: (d: VmDefinition) => VmDefinition): Promise<VmDefinition> {
    const def = change(this.currentDefinition);
    await store.update(def);
    this.currentDefinition = def;
    return def;
  }

  /** Its stored definition cannot be read: the VM is listed in state `error` and the operator decides. */
  markBroken(reason: string): void {
    this.brokenReason = reason;
  }

  /** At adoption: how the last run ended, as recorded on disk, or as found when qemu ended while the daemon was away. */
  restoreLastExit(exit: LastExit | undefined): void {
    this.currentLastExit = exit;
  }

  /** The daemon itself is ending qemu: its exit is recorded with this reason, not taken for a crash. */
  expectExit(reason: string): void {
    this.expectedExit = reason;
  }

  /** A job now works on the VM; it is shown with the VM until jobEnded. */
  showJob(job: Job): void {
    this.currentJob = job;
  }

  jobEnded(job: Job): void {
    if (this.currentJob === job) this.currentJob = undefined;
  }

  /** Fleet mode: this host holds the VM's owner key (acquired, taken over, handed over), or no longer does. */
  holdOwner(owner: Ownership | undefined): void {
    this.currentOwner = owner;
  }

  state(): VmState {
    return deriveState({
      operation: this.lock.current?.name,
      broken: this.broken,
      qemuAlive: this.session !== undefined,
      qemuStatus: this.session?.status,
      lastExit: this.lastExit,
      outcomeUnknown: this.migrationOutcome.unknown !== undefined,
    });
  }

  /** The state as it would be with no operation in flight: what a precondition checks. */
  settledState(): VmState {
    return deriveState({
      broken: this.broken,
      qemuAlive: this.session !== undefined,
      qemuStatus: this.session?.status,
      lastExit: this.lastExit,
    });
  }

  view(): VmView {
    const op = this.lock.current;
    return renderView({
      definition: this.definition,
      state: this.state(),
      session: this.session,
      qmpDebugSocket: this.paths.qmpDebugSocket,
      balloonBytes: this.balloonBytes,
      appliedLimits: this.appliedLimits,
      removalPending: this.removals.list(),
      operation: op ? { name: op.name, startedAt: op.startedAt } : undefined,
      outcomeUnknown: this.migrationOutcome.unknown,
      job: this.job?.view(),
      lastExit: this.lastExit,
      broken: this.broken,
      stateWriteError: this.stateWriteError,
      owner: this.owner,
    });
  }

  /**
   * Brings the facts a view shows from qemu and the host up to date before it is
   * served: asked of qemu (status, throttle group, balloon) and the host (cgroup,
   * tc) only when an event or an operation may have changed them since the last
   * complete read, or when qemu did not answer last time. A hung qemu is flagged,
   * not waited on.
   */
  async refresh(timeoutMs = 1000): Promise<void> {
    const session = this.session;
    if (!session?.connected) return;
    if (this.facts.fresh && !session.unresponsive && session.status !== undefined) return;
    this.reading ??= this.readFacts(session, timeoutMs).finally(() => (this.reading = undefined));
    await this.reading;
  }

  private async readFacts(session: QemuSession, timeoutMs: number): Promise<void> {
    const token = this.facts.begin();
    const status = await session.refreshStatus(timeoutMs).then(() => true, () => false);
    const limits = await readAppliedLimits(this, timeoutMs).catch((err: unknown) => {
      this.log.warn({ err }, "cannot read the VM's limits back");
      return undefined;
    });
    if (this.session !== session) return;
    this.appliedLimits = limits?.limits;
    // A guest without the balloon driver makes qemu refuse; the view then shows no balloon.
    let balloon = true;
    if (this.definition.balloon && !session.unresponsive) {
      this.balloonBytes = await session.execute("query-balloon", undefined, timeoutMs).then(
        (b) => b.actual,
        (err: unknown) => {
          balloon = !(err instanceof QemuUnresponsive);
          return undefined;
        },
      );
    }
    if (status && limits?.whole && balloon && !session.unresponsive && this.session === session) this.facts.settled(token);
  }

  /** The limits the running VM held at the last read (refresh). */
  get limitsHeld(): VmLimits | undefined {
    return this.appliedLimits;
  }

  publish<K extends BusEventType>(type: K, ...data: PayloadArg<K>): void {
    this.bus.publish(type, this.name, ...data);
  }

  /**
   * Publishes `vm.state` if the state differs from the one last published, with
   * why it changed: an operation's name, a qemu event (`qemu.STOP`) or how qemu exited.
   */
  publishState(reason: string, extra: Pick<EventPayload<"vm.state">, "lastExit"> = {}): void {
    const state = this.state();
    if (state === this.publishedState) return;
    this.publishedState = state;
    this.publish("vm.state", { state, reason, ...extra });
  }

  /** Takes ownership of a live qemu: from here on its exit is noticed and recorded. */
  attachSession(session: QemuSession): void {
    this.currentSession = session;
    this.facts.changed();
    this.logs.watch();
    session.onEvent((e) => {
      this.facts.changed();
      this.log.info({ event: e.event, data: e.data }, "qemu event");
      this.publish(`qemu.${e.event}`, { data: e.data ?? {} });
      if (["STOP", "RESUME", "SHUTDOWN"].includes(e.event)) this.publishState(`qemu.${e.event}`);
      if (e.event === "SHUTDOWN" && e.data?.guest === true) void this.endAfterGuestShutdown();
      if (e.event === "BALLOON_CHANGE" && typeof e.data?.actual === "number") this.balloonBytes = e.data.actual;
    });
    // A qemu that had not answered (a hung one, a lost monitor) is heard from again: its state is known anew.
    session.onAnswering(() => {
      this.facts.changed();
      this.publishState("qemu.answering");
    });
    void session.gone.then((exit) => this.onSessionGone(session, exit));
  }

  private async onSessionGone(session: QemuSession, exit: SessionExit): Promise<void> {
    if (this.session !== session) return;
    const fenced = await takeFencedRecord(this.paths.runDir, session.record.pid, session.record.procStartTicks);
    if (this.session !== session) return;
    const lastExit = lastExitOf(exit, this.expectedExit, fenced);
    const reason = lastExit.reason;
    this.currentLastExit = lastExit;
    this.currentSession = undefined;
    this.facts.changed();
    this.logs.qemuEnded();
    this.expectedExit = undefined;
    this.balloonBytes = undefined;
    this.appliedLimits = undefined;
    this.removals.abortAll();
    this.log.info({ lastExit }, "qemu exited");
    await Promise.all([
      recordExit(this, lastExit),
      // Before anyone waiting for the exit hears of it: a stop answers with the taps gone,
      // and a restart (the crash policy, or the next start) makes them afresh.
      removeVmTaps(this.definition, this.log),
      releaseLimits(this).catch((err: unknown) => this.log.warn({ err }, "cannot remove the VM's cgroup")),
      // An export is of a running VM's disk: it ends with the VM.
      endAllExports(this).catch((err: unknown) => this.log.warn({ err }, "ending the VM's disk exports failed")),
    ]);
    this.publishState(reason, { lastExit });
    if (reason === "fenced") this.publish("vm.fenced", { pid: session.record.pid, detail: lastExit.detail ?? "the host lease was lost" });
    for (const w of this.exitWaiters) w();
    this.exitWaiters.clear();
    if (reason === "crashed") countQemuCrash();
    this.onExit(this, reason);
  }

  /**
   * Runs a write of this VM's state. A failure (state disk full or read-only) is
   * the daemon's problem, never the guest's: it is logged and shown, not thrown.
   */
  async recordState(write: () => Promise<void>): Promise<boolean> {
    try {
      await write();
      this.stateWriteError = undefined;
      return true;
    } catch (err) {
      this.stateWriteError = `cannot record state: ${(err as Error).message}`;
      this.log.error({ err }, "cannot record state");
      return false;
    }
  }

  /**
   * qemu runs with `-action shutdown=pause`: when the guest powers off (or panics)
   * qemu stays, paused, until the daemon has seen why and ends it. So how a run
   * ended is always known, even when the guest powered off while the daemon was down.
   */
  async endAfterGuestShutdown(): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.expectedExit ??= session.shutdownReason === "guest-panic" ? "crashed" : "guest-shutdown";
    await session.execute("quit", undefined, 5_000).catch((err: Error) => {
      this.log.warn({ err: err.message }, "quit after guest shutdown failed");
    });
  }

  /** Resolves once no qemu is alive for this VM. */
  waitStopped(signal?: AbortSignal): Promise<void> {
    if (!this.session) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.exitWaiters.delete(done);
        resolve();
      };
      this.exitWaiters.add(done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}
