// A scriptable QMP server on a Unix socket in a temp dir, for the protocol edge
// cases a real qemu will not produce on demand (garbage lines, split writes,
// replies out of order, silence). Tests read the commands it receives and write
// back exactly the bytes they want.
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import split2 from "split2";

export interface FakeQmpCommand {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
}

export interface FakeQmpServerOptions {
  /** Send a qemu-7.2-like greeting on connect (default true). */
  greeting?: boolean;
  /** Answer qmp_capabilities by itself (default true), so tests see only later commands. */
  answerCapabilities?: boolean;
}

/** A FIFO whose shift() waits, with a deadline, for the next item. */
class WaitQueue<T> {
  private readonly items: T[] = [];
  private readonly waiters: ((item: T) => void)[] = [];

  push(item: T): void {
    const w = this.waiters.shift();
    if (w) w(item);
    else this.items.push(item);
  }

  shift(timeoutMs: number, what: string): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(take), 1);
        reject(new Error(`fake QMP server: no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const take = (it: T): void => {
        clearTimeout(timer);
        resolve(it);
      };
      this.waiters.push(take);
    });
  }
}

/** One line of a success reply. */
export function qmpReturnLine(id: unknown, value: unknown = {}): string {
  return JSON.stringify({ return: value, id }) + "\n";
}

/** One line of an error reply. */
export function qmpErrorLine(id: unknown, errorClass: string, desc: string): string {
  return JSON.stringify({ error: { class: errorClass, desc }, id }) + "\n";
}

/** One line of an event, timestamped like qemu does. */
export function qmpEventLine(event: string, data?: Record<string, unknown>): string {
  const now = Date.now();
  const timestamp = { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 };
  return JSON.stringify(data === undefined ? { event, timestamp } : { event, data, timestamp }) + "\n";
}

export const FAKE_GREETING = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 }, package: "fake" }, capabilities: ["oob"] },
};

/** The server side of one client connection. */
export class FakeQmpPeer {
  private readonly commands = new WaitQueue<FakeQmpCommand>();
  /** Resolves when the client's side has closed. */
  readonly gone: Promise<void>;

  constructor(
    private readonly socket: net.Socket,
    opts: Required<FakeQmpServerOptions>,
  ) {
    this.gone = new Promise((resolve) => socket.on("close", () => resolve()));
    socket.on("error", () => {}); // resets from the client are part of the tests
    socket.pipe(split2()).on("data", (line: string) => {
      const cmd = JSON.parse(line) as FakeQmpCommand;
      if (opts.answerCapabilities && cmd.execute === "qmp_capabilities") this.reply(cmd);
      else this.commands.push(cmd);
    });
    if (opts.greeting) this.write(JSON.stringify(FAKE_GREETING) + "\n");
  }

  /** The next command the client sent (qmp_capabilities excluded unless answerCapabilities is off). */
  nextCommand(timeoutMs = 5_000): Promise<FakeQmpCommand> {
    return this.commands.shift(timeoutMs, "command");
  }

  /** Writes bytes exactly as given: partial lines, several lines, garbage. */
  write(raw: string | Buffer): void {
    this.socket.write(raw);
  }

  reply(cmd: FakeQmpCommand, value: unknown = {}): void {
    this.write(qmpReturnLine(cmd.id, value));
  }

  fail(cmd: FakeQmpCommand, errorClass: string, desc: string): void {
    this.write(qmpErrorLine(cmd.id, errorClass, desc));
  }

  event(name: string, data?: Record<string, unknown>): void {
    this.write(qmpEventLine(name, data));
  }

  /** Closes our side after flushing what was written, as qemu does when it exits. */
  hangUp(): void {
    this.socket.end();
  }
}

export class FakeQmpServer {
  private readonly peers = new WaitQueue<FakeQmpPeer>();
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    readonly dir: string,
    readonly path: string,
    private readonly server: net.Server,
  ) {}

  static async start(options: FakeQmpServerOptions = {}): Promise<FakeQmpServer> {
    const opts: Required<FakeQmpServerOptions> = { greeting: true, answerCapabilities: true, ...options };
    const dir = await mkdtemp(path.join(os.tmpdir(), "vmh-fakeqmp-"));
    const sockPath = path.join(dir, "qmp.sock");
    const server = net.createServer();
    const fake = new FakeQmpServer(dir, sockPath, server);
    server.on("connection", (socket) => {
      fake.sockets.add(socket);
      socket.on("close", () => fake.sockets.delete(socket));
      fake.peers.push(new FakeQmpPeer(socket, opts));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(sockPath, () => resolve());
    });
    return fake;
  }

  /** The next client connection, in the order they arrived. */
  nextPeer(timeoutMs = 5_000): Promise<FakeQmpPeer> {
    return this.peers.shift(timeoutMs, "connection");
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }
}
