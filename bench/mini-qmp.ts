// Just enough QMP to start a qemu by hand and see it run: connect (retrying
// until qemu has created the socket), greeting, qmp_capabilities, execute.
// Deliberately independent of src/qmp so the raw-qemu baseline measures qemu,
// not our client; events are read and dropped.
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

type Reply = { return?: unknown; error?: { class: string; desc: string }; id?: number; event?: string; QMP?: unknown };

/** How long to wait between attempts while qemu has not yet created its socket. */
const CONNECT_RETRY_MS = 2;

export class MiniQmp {
  private nextId = 1;
  private buffered = "";
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private closed?: Error;
  private greeted!: { resolve: () => void; reject: (e: Error) => void };
  private readonly greeting = new Promise<void>((resolve, reject) => (this.greeted = { resolve, reject }));

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.onData(chunk));
    sock.on("error", (err) => this.fail(err));
    sock.on("close", () => this.fail(new Error("QMP connection closed")));
  }

  /**
   * Connects once the socket exists and qemu accepts, then negotiates capabilities.
   * `alive` lets the caller stop the retries when qemu has already died.
   */
  static async connect(path: string, deadlineMs: number, alive: () => boolean): Promise<MiniQmp> {
    const until = performance.now() + deadlineMs;
    for (;;) {
      try {
        const sock = await openSocket(path);
        const qmp = new MiniQmp(sock);
        await qmp.greeting;
        await qmp.execute("qmp_capabilities");
        return qmp;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // ENOENT: not created yet; ECONNREFUSED: created but not yet listening.
        if (code !== "ENOENT" && code !== "ECONNREFUSED") throw err;
        if (!alive()) throw new Error(`qemu exited before its QMP socket ${path} accepted`);
        if (performance.now() > until) throw new Error(`QMP socket ${path} not ready in ${deadlineMs} ms`);
        await sleep(CONNECT_RETRY_MS);
      }
    }
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    const reply = new Promise<Reply>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.sock.write(JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + "\n");
    return reply.then((r) => {
      if (r.error) throw new Error(`QMP ${command}: ${r.error.class}: ${r.error.desc}`);
      return r.return;
    });
  }

  /** Sends `quit`; qemu may hang up before it replies, which is success too. */
  async quit(): Promise<void> {
    await this.execute("quit").catch(() => undefined);
    this.sock.destroy();
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf("\n")) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Reply;
    try {
      msg = JSON.parse(line) as Reply;
    } catch {
      // A reply we cannot parse means the stream is out of step: treat as broken.
      this.fail(new Error(`unparsable QMP message: ${line.slice(0, 200)}`));
      this.sock.destroy();
      return;
    }
    if (msg.QMP !== undefined) return this.greeted.resolve();
    if (msg.event !== undefined || msg.id === undefined) return;
    const waiter = this.pending.get(msg.id);
    this.pending.delete(msg.id);
    waiter?.resolve(msg);
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = err;
    this.greeted.reject(err);
    for (const w of this.pending.values()) w.reject(err);
    this.pending.clear();
  }
}

function openSocket(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    sock.once("connect", () => {
      sock.off("error", reject);
      resolve(sock);
    });
    sock.once("error", reject);
  });
}
