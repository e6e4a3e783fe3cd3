// A QMP client, shaped after qemu's python/qemu/qmp: ids from a counter, a map
// of one-shot waiters keyed by id, a timeout per command, events handed to each
// listener in order, and every waiter rejected when the connection drops. It
// knows nothing of VMs: no retries, no reconnects, no state beyond the socket.
import type { Logger } from "pino";
import type { QmpCommands, QmpEvent, QmpGreeting } from "./commands.js";
import { QmpConnectError, QmpDisconnected, QmpExecuteError, QmpProtocolError, QmpTimeout } from "./errors.js";
import { classifyServerMessage, type ServerMessage } from "./server-messages.js";
import { redactArguments } from "./secret-redaction.js";
import { commandTimeoutMs } from "./timeouts.js";
import { QmpTransport, type TransportEnd } from "./transport.js";

export interface QmpClientOptions {
  /** Commands, replies and events are logged at debug; bindings are the caller's. */
  logger?: Logger;
  /** For connecting, the greeting and qmp_capabilities together. */
  connectTimeoutMs?: number;
  /** Per-command overrides of the timeout table (timeouts.ts). */
  timeouts?: Partial<Record<string, number>>;
  /** Told how each command ended and how long it took (for metrics); must not throw. */
  onCommandSettled?: QmpCommandObserver;
}

/** How a command ended: answered, refused by qemu, given up on, or cut off by a hang-up. */
export type QmpCommandOutcome = "ok" | "error" | "timeout" | "disconnected";
export type QmpCommandObserver = (command: string, outcome: QmpCommandOutcome, seconds: number) => void;

export interface ExecuteOptions {
  /** Overrides the table and the client's overrides for this call; Infinity waits for ever. */
  timeoutMs?: number;
}

export type QmpEventListener = (e: QmpEvent) => void;

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Ids we send are "vmh-1", "vmh-2", ...: strings, so a reply's id is easy to match and to log. */
const ID_PREFIX = "vmh-";

/**
 * How many timed-out ids we remember so that their late replies are dropped
 * quietly. qemu answers in order, so a late reply comes soon or never; the cap
 * only bounds memory if qemu swallowed commands without answering.
 */
const LATE_REPLY_MEMORY = 1024;

interface Waiter {
  readonly id: string;
  readonly command: string;
  readonly args: Record<string, unknown> | undefined;
  readonly sentAt: number;
  timer: NodeJS.Timeout | undefined;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface ListenerEntry {
  readonly listener: QmpEventListener;
  readonly remove: () => void;
}

export class QmpClient {
  /**
   * Settles once, when the connection is gone: `undefined` for an orderly end
   * (close() was called, or qemu hung up after we sent quit), else the reason:
   * a QmpDisconnected when qemu hung up, a QmpProtocolError when it sent garbage.
   */
  readonly closed: Promise<Error | undefined>;
  private resolveClosed!: (reason: Error | undefined) => void;
  private readonly transport: QmpTransport;
  private readonly log: Logger | undefined;
  private readonly timeouts: Partial<Record<string, number>> | undefined;
  private readonly observer: QmpCommandObserver | undefined;
  private greetingValue: QmpGreeting | undefined;
  private greetingWaiter: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private nextId = 1;
  private readonly pending = new Map<string, Waiter>();
  private readonly timedOut = new Set<string>();
  private readonly listeners = new Set<ListenerEntry>();
  private quitSent = false;
  private isClosed = false;

  private constructor(path: string, opts: QmpClientOptions) {
    this.log = opts.logger;
    this.timeouts = opts.timeouts;
    this.observer = opts.onCommandSettled;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.transport = QmpTransport.open(path, {
      message: (msg, line) => this.onMessage(msg, line),
      end: (how) => this.onEnd(how),
    });
  }

  /** Connects, reads the greeting, negotiates capabilities; resolves when commands can be sent. */
  static async connect(path: string, opts: QmpClientOptions = {}): Promise<QmpClient> {
    const limitMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const client = new QmpClient(path, opts);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new QmpConnectError(path, `no QMP greeting and capabilities within ${limitMs} ms`)),
        limitMs,
      );
    });
    try {
      await Promise.race([client.handshake(), deadline]);
      return client;
    } catch (err) {
      client.transport.destroy();
      throw connectFailure(path, err);
    } finally {
      clearTimeout(timer);
    }
  }

  /** What qemu said when we connected (its version and the capabilities it offered). */
  get greeting(): QmpGreeting {
    // connect() only hands out a client once the greeting has arrived.
    if (!this.greetingValue) throw new Error("QmpClient used before its greeting arrived");
    return this.greetingValue;
  }

  /** Sends a command we have types for. Rejects with a QmpError subclass. */
  execute<K extends keyof QmpCommands>(
    command: K,
    args?: QmpCommands[K]["args"],
    opts?: ExecuteOptions,
  ): Promise<QmpCommands[K]["result"]> {
    return this.executeRaw(command, args, opts) as Promise<QmpCommands[K]["result"]>;
  }

  /** Sends any command; the reply's `return` is not checked. For passthroughs. */
  async executeRaw(command: string, args?: Record<string, unknown>, opts?: ExecuteOptions): Promise<unknown> {
    if (this.isClosed) throw new QmpDisconnected(command, `QMP connection is closed; ${command} not sent`);
    const timeoutMs = commandTimeoutMs(command, opts?.timeoutMs, this.timeouts);
    const id = `${ID_PREFIX}${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const w: Waiter = { id, command, args, sentAt: performance.now(), timer: undefined, resolve, reject };
      if (Number.isFinite(timeoutMs)) w.timer = setTimeout(() => this.expire(w, timeoutMs), timeoutMs);
      this.pending.set(id, w);
      if (command === "quit") this.quitSent = true;
      // The redacted copy is made only when it is logged.
      if (this.log?.isLevelEnabled("debug")) this.log.debug({ qmpId: id, command, args: redactArguments(args) }, "qmp command");
      this.transport.send(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
    });
  }

  /**
   * Calls `listener` with each event, in the order qemu sent them; each listener
   * gets its own copy. Stops when `signal` aborts or when the returned function is called.
   */
  onEvent(listener: QmpEventListener, signal?: AbortSignal): () => void {
    if (signal?.aborted || this.isClosed) return () => {};
    const remove = (): void => {
      this.listeners.delete(entry);
      signal?.removeEventListener("abort", remove);
    };
    const entry: ListenerEntry = { listener, remove };
    this.listeners.add(entry);
    signal?.addEventListener("abort", remove, { once: true });
    return remove;
  }

  /** Closes the connection; pending commands reject with QmpDisconnected. Idempotent. */
  close(): void {
    this.transport.destroy();
  }

  private async handshake(): Promise<void> {
    await new Promise<void>((resolve, reject) => (this.greetingWaiter = { resolve, reject }));
    // connect()'s deadline bounds the whole handshake; a second, shorter one here would only confuse.
    await this.executeRaw("qmp_capabilities", undefined, { timeoutMs: Infinity });
  }

  private onMessage(raw: Record<string, unknown>, line: string): void {
    const msg = classifyServerMessage(raw);
    if (msg.kind === "invalid") return this.protocolError(msg.reason, line);
    if (this.greetingWaiter) {
      if (msg.kind !== "greeting") return this.protocolError(`expected the QMP greeting, got a ${msg.kind}`, line);
      this.greetingValue = msg.greeting;
      this.log?.debug({ greeting: msg.greeting }, "qmp greeting");
      const w = this.greetingWaiter;
      this.greetingWaiter = undefined;
      return w.resolve();
    }
    switch (msg.kind) {
      case "greeting":
        return this.protocolError("received a second greeting", line);
      case "event":
        return this.deliver(msg.event);
      case "return":
      case "error":
        return this.settle(msg, line);
    }
  }

  private settle(msg: Extract<ServerMessage, { kind: "return" | "error" }>, line: string): void {
    const id = msg.id;
    const w = typeof id === "string" ? this.pending.get(id) : undefined;
    if (!w) {
      // qemu answers late rather than never: a reply to a command we gave up on is expected.
      if (typeof id === "string" && this.timedOut.delete(id)) {
        this.log?.debug({ qmpId: id, kind: msg.kind }, "qmp late reply dropped");
        return;
      }
      const what = id === undefined ? "a reply without an id" : `a reply for unknown id ${JSON.stringify(id)}`;
      return this.protocolError(`received ${what}`, line);
    }
    this.pending.delete(w.id);
    clearTimeout(w.timer);
    const ms = Math.round(performance.now() - w.sentAt);
    this.observe(w, msg.kind === "error" ? "error" : "ok");
    if (msg.kind === "error") {
      this.log?.debug({ qmpId: w.id, command: w.command, ms, error: { class: msg.errorClass, desc: msg.desc } }, "qmp error");
      w.reject(new QmpExecuteError(w.command, w.args, msg.errorClass, msg.desc));
    } else {
      this.log?.debug({ qmpId: w.id, command: w.command, ms, return: msg.value }, "qmp reply");
      w.resolve(msg.value);
    }
  }

  private expire(w: Waiter, timeoutMs: number): void {
    if (this.pending.get(w.id) !== w) return;
    this.pending.delete(w.id);
    this.timedOut.add(w.id);
    if (this.timedOut.size > LATE_REPLY_MEMORY) {
      const oldest = this.timedOut.values().next().value;
      if (oldest !== undefined) this.timedOut.delete(oldest);
    }
    this.log?.debug({ qmpId: w.id, command: w.command, timeoutMs }, "qmp command timed out");
    this.observe(w, "timeout");
    w.reject(new QmpTimeout(w.command, timeoutMs));
  }

  private observe(w: Waiter, outcome: QmpCommandOutcome): void {
    try {
      this.observer?.(w.command, outcome, (performance.now() - w.sentAt) / 1000);
    } catch (err) {
      this.log?.warn({ err, command: w.command }, "qmp command observer threw");
    }
  }

  private deliver(event: QmpEvent): void {
    this.log?.debug({ event }, "qmp event");
    // A snapshot, so that listeners added while delivering start with the next
    // event; the membership check skips listeners removed while delivering.
    for (const entry of [...this.listeners]) {
      if (!this.listeners.has(entry)) continue;
      try {
        entry.listener(structuredClone(event));
      } catch (err) {
        // One broken listener must not starve the others or the connection.
        this.log?.warn({ err, event: event.event }, "qmp event listener threw");
      }
    }
  }

  private protocolError(reason: string, line: string): void {
    this.transport.destroy(new QmpProtocolError(reason, line));
  }

  private onEnd(how: TransportEnd): void {
    this.isClosed = true;
    const reason = closeReason(how, this.quitSent);
    const gone = reason ?? how.error;
    for (const w of this.pending.values()) {
      clearTimeout(w.timer);
      // qemu may exit before its reply to quit reaches us: for quit, the hang-up is the success.
      if (how.by === "peer" && w.command === "quit") {
        this.log?.debug({ qmpId: w.id, command: w.command }, "qmp hang-up after quit");
        this.observe(w, "ok");
        w.resolve({});
        continue;
      }
      this.observe(w, "disconnected");
      w.reject(
        new QmpDisconnected(w.command, `QMP connection closed before ${w.command} was answered`, { cause: gone }),
      );
    }
    this.pending.clear();
    this.timedOut.clear();
    for (const entry of [...this.listeners]) entry.remove();
    this.greetingWaiter?.reject(reason ?? new QmpDisconnected(undefined, "QMP connection closed before the greeting"));
    this.greetingWaiter = undefined;
    this.log?.debug({ by: how.by, reason: reason?.message }, "qmp connection closed");
    this.resolveClosed(reason);
  }
}

/** Why the connection is gone, as `closed` reports it (undefined: an orderly end). */
function closeReason(how: TransportEnd, quitSent: boolean): Error | undefined {
  if (how.by === "local") return how.error;
  if (quitSent) return undefined;
  const message = how.error ? `QMP connection lost: ${how.error.message}` : "qemu closed the QMP connection";
  return new QmpDisconnected(undefined, message, { cause: how.error });
}

function connectFailure(path: string, err: unknown): QmpConnectError {
  if (err instanceof QmpConnectError) return err;
  // Prefer the socket's own error (ENOENT, ECONNREFUSED) as the cause: callers test its code.
  const root = err instanceof QmpDisconnected && err.cause instanceof Error ? err.cause : err;
  const message = root instanceof Error ? root.message : String(root);
  return new QmpConnectError(path, `cannot connect: ${message}`, { cause: root });
}
