// One live qemu of a VM: its runtime record, its QMP connection, and the watch
// that tells when the process has gone. The QMP client stays protocol-only;
// this is where its errors become the domain's (timeout → unresponsive).
import type { Logger } from "pino";
import { QemuFailed, QemuUnresponsive, QmpCommandRefused } from "../errors.js";
import { QmpClient } from "../qmp/qmp-client.js";
import { observeQmpCommand } from "../metrics/metric-hooks.js";
import { QmpExecuteError, QmpTimeout, QmpError } from "../qmp/errors.js";
import type { QmpCommands, QmpEvent } from "../qmp/commands.js";
import { waitForProcessGone, type ProcessExit } from "../qemu/qemu-launcher.js";
import { isSameProcess } from "../qemu/qemu-process.js";
import type { RuntimeRecord } from "../store/runtime-store.js";
import { stat } from "node:fs/promises";
import { prepareBlockdev } from "../qemu/qemu-files.js";
import type { QemuIdentity } from "../qemu/qemu-user.js";
import { setTimeout as sleep } from "node:timers/promises";

export interface SessionExit extends ProcessExit {
  /** The reason from qemu's last SHUTDOWN event, if one came (guest-shutdown, host-qmp-quit, ...). */
  shutdownReason?: string;
}

export class QemuSession {
  /** qemu's RunState as last reported (query-status or STOP/RESUME/SHUTDOWN events). */
  status: string | undefined;
  unresponsive = false;
  shutdownReason: string | undefined;
  private qmp: QmpClient | undefined;
  private readonly stopWatching = new AbortController();
  private readonly eventListeners = new Set<(e: QmpEvent) => void>();
  private readonly answeringListeners = new Set<() => void>();
  private retrying = false;
  readonly gone: Promise<SessionExit>;

  constructor(
    readonly vm: string,
    readonly record: RuntimeRecord,
    readonly qmpSocket: string,
    private readonly log: Logger,
    childExit?: Promise<ProcessExit>,
  ) {
    // A non-child's exit status cannot be read; a detach (daemon exit) is not an exit.
    const exit =
      childExit ??
      waitForProcessGone(record.pid, record.procStartTicks, this.stopWatching.signal, 250).then(() =>
        this.stopWatching.signal.aborted ? new Promise<ProcessExit>(() => {}) : { code: null, signal: null },
      );
    this.gone = exit.then((e) => {
      this.stopWatching.abort();
      this.qmp?.close();
      return { ...e, shutdownReason: this.shutdownReason };
    });
  }

  get pid(): number {
    return this.record.pid;
  }

  /** Who this qemu runs as (undefined: root), from its runtime record. */
  get identity(): QemuIdentity | undefined {
    return this.record.uid === undefined ? undefined : { uid: this.record.uid, gid: this.record.gid ?? 0 };
  }

  get connected(): boolean {
    return this.qmp !== undefined;
  }

  /** Connects QMP, retrying while qemu is still creating its socket or the process lives. */
  async connect(deadlineMs: number): Promise<void> {
    const started = Date.now();
    const until = started + deadlineMs;
    let lastErr: unknown;
    let lastAliveCheck = started;
    while (Date.now() < until && !this.stopWatching.signal.aborted) {
      // Until the socket exists a connect cannot succeed; a stat is far cheaper than a failed client.
      if (await socketExists(this.qmpSocket)) {
        try {
          const qmp = await QmpClient.connect(this.qmpSocket, {
            logger: this.log,
            connectTimeoutMs: Math.max(100, Math.min(5000, until - Date.now())),
            onCommandSettled: observeQmpCommand,
          });
          this.attach(qmp);
          return;
        } catch (err) {
          lastErr = err;
        }
      }
      if (Date.now() - lastAliveCheck >= 100) {
        lastAliveCheck = Date.now();
        if (!(await isSameProcess(this.record.pid, this.record.procStartTicks))) break;
      }
      // qemu creates its socket within tens of ms; polling briefly at first keeps start latency low.
      await sleep(Date.now() - started < 500 ? 2 : 20);
    }
    throw new QemuFailed(`cannot connect to qemu's QMP socket: ${(lastErr as Error)?.message ?? "process ended"}`, {
      vm: this.vm,
    });
  }

  private attach(qmp: QmpClient): void {
    this.qmp = qmp;
    qmp.onEvent((e) => this.onQmpEvent(e), this.stopWatching.signal);
    void qmp.closed.then((reason) => {
      if (this.qmp === qmp) this.qmp = undefined;
      if (this.stopWatching.signal.aborted) return;
      this.log.info({ reason: reason?.message }, "QMP connection closed");
      this.reconnectInBackground();
    });
  }

  /**
   * A QMP hang-up, no connection yet, or a qemu that did not answer its status:
   * while the process lives, keep trying to get the monitor back and its status
   * read; listeners of onAnswering hear once it is.
   */
  reconnectInBackground(): void {
    if (this.retrying) return;
    this.retrying = true;
    void this.reconnectWhileAlive().finally(() => (this.retrying = false));
  }

  private async reconnectWhileAlive(): Promise<void> {
    await sleep(200);
    while (!this.stopWatching.signal.aborted && (!this.qmp || this.unresponsive || this.status === undefined)) {
      if (!(await isSameProcess(this.record.pid, this.record.procStartTicks))) return;
      try {
        if (!this.qmp) await this.connect(1000);
        await this.refreshStatus(2000);
        this.log.info({ status: this.status }, "qemu answers QMP again");
        for (const l of this.answeringListeners) l();
        return;
      } catch {
        await sleep(1000);
      }
    }
  }

  /** Told each time a qemu that had not answered (or had no monitor) answers its status again. */
  onAnswering(listener: () => void): void {
    this.answeringListeners.add(listener);
  }

  private onQmpEvent(e: QmpEvent): void {
    switch (e.event) {
      case "STOP":
        this.status = "paused";
        break;
      case "RESUME":
        this.status = "running";
        break;
      case "SHUTDOWN":
        this.status = "shutdown";
        this.shutdownReason = typeof e.data?.reason === "string" ? e.data.reason : "unknown";
        break;
    }
    for (const l of this.eventListeners) l(e);
  }

  onEvent(listener: (e: QmpEvent) => void, signal?: AbortSignal): void {
    this.eventListeners.add(listener);
    signal?.addEventListener("abort", () => this.eventListeners.delete(listener), { once: true });
  }

  async execute<K extends keyof QmpCommands>(
    command: K,
    args?: QmpCommands[K]["args"],
    timeoutMs?: number,
  ): Promise<QmpCommands[K]["result"]> {
    const qmp = this.qmp;
    if (!qmp) throw new QemuUnresponsive(`qemu of VM "${this.vm}" has no QMP connection`, { vm: this.vm, command });
    // A file opened later (hot-plug, CD change, backup target) is handed over as at start.
    const identity = this.identity;
    if (command === "blockdev-add" && identity) await prepareBlockdev(args, identity);
    try {
      const result = await qmp.execute(command, args, timeoutMs ? { timeoutMs } : undefined);
      this.unresponsive = false;
      return result;
    } catch (err) {
      throw this.domainError(command, err);
    }
  }

  /**
   * An operator's own command (`POST .../qmp`), untyped: qemu's error comes back
   * as the operator's problem (422), not as a daemon failure.
   */
  async executeUntyped(command: string, args: Record<string, unknown> | undefined, timeoutMs: number): Promise<unknown> {
    const qmp = this.qmp;
    if (!qmp) throw new QemuUnresponsive(`qemu of VM "${this.vm}" has no QMP connection`, { vm: this.vm, command });
    try {
      const result = await qmp.executeRaw(command, args, { timeoutMs });
      this.unresponsive = false;
      return result;
    } catch (err) {
      if (err instanceof QmpExecuteError) {
        throw new QmpCommandRefused(`qemu refused ${command}: ${err.desc}`, { vm: this.vm, command, qemuClass: err.errorClass, qemuDesc: err.desc });
      }
      throw this.domainError(command, err);
    }
  }

  async refreshStatus(timeoutMs = 2000): Promise<string> {
    const st = await this.execute("query-status", undefined, timeoutMs);
    this.status = st.status;
    return st.status;
  }

  private domainError(command: string, err: unknown): Error {
    if (err instanceof QmpTimeout) {
      this.unresponsive = true;
      return new QemuUnresponsive(`qemu of VM "${this.vm}" did not answer ${command} in time`, { vm: this.vm, command });
    }
    if (err instanceof QmpExecuteError) {
      return new QemuFailed(`qemu refused ${command}: ${err.desc}`, { vm: this.vm, command, qemuClass: err.errorClass });
    }
    if (err instanceof QmpError) {
      return new QemuFailed(`QMP ${command} failed: ${err.message}`, { vm: this.vm, command });
    }
    return err as Error;
  }

  /** Stops watching and closes QMP without touching the process (daemon exit). */
  detach(): void {
    this.stopWatching.abort();
    this.qmp?.close();
  }
}

async function socketExists(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isSocket();
  } catch {
    return false;
  }
}
