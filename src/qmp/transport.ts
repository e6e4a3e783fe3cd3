// QMP's framing: one JSON object per line each way, over a Unix socket. This
// layer turns bytes into parsed objects and objects into lines; it knows nothing
// of ids, commands or events (qmp-client.ts does).
import net from "node:net";
import type { Transform } from "node:stream";
import split2 from "split2";
import { QmpProtocolError } from "./errors.js";

/**
 * Longest line we accept, in characters. qemu 7.2's biggest reply we know of
 * (query-qmp-schema) is about 200 KiB; a line far past that is not qemu talking,
 * and without a cap a peer that never sends a newline would grow memory forever.
 */
export const MAX_LINE_CHARS = 32 * 1024 * 1024;

/** How the connection ended: closed by us (with the error that made us, if any), or by the peer. */
export type TransportEnd = { by: "local"; error?: Error } | { by: "peer"; error?: Error };

export interface TransportHandlers {
  /** One JSON object from the peer, with the line it came from (for diagnostics). */
  message(msg: Record<string, unknown>, line: string): void;
  /** Called exactly once; no message follows it. */
  end(how: TransportEnd): void;
}

export class QmpTransport {
  private ended = false;
  private peerError: Error | undefined;
  private readonly lines: Transform;

  /** Starts connecting to a Unix socket; a failure to connect arrives as `end` by the peer. */
  static open(path: string, handlers: TransportHandlers): QmpTransport {
    return new QmpTransport(net.createConnection({ path }), handlers);
  }

  constructor(
    private readonly socket: net.Socket,
    private readonly handlers: TransportHandlers,
  ) {
    this.lines = split2({ maxLength: MAX_LINE_CHARS });
    socket.on("error", (err) => {
      this.peerError ??= err;
    });
    // A reset (ECONNRESET, common when qemu exits on quit) closes the socket
    // without 'end', so pipe() never ends the splitter: end it here so that the
    // lines already read are still delivered before we report the close.
    socket.on("close", () => {
      if (!this.lines.writableEnded && !this.lines.destroyed) this.lines.end();
    });
    socket.pipe(this.lines);
    this.lines.on("data", (line: string) => this.onLine(line));
    this.lines.on("error", (err: Error) => this.destroy(new QmpProtocolError(`cannot frame input: ${err.message}`)));
    // The splitter's 'end' comes after its last line, so only then is the peer done.
    this.lines.on("end", () => this.finish({ by: "peer", error: this.peerError }));
  }

  get isOpen(): boolean {
    return !this.ended;
  }

  /** Writes one message as one line. Returns false if the connection has already ended. */
  send(msg: Record<string, unknown>): boolean {
    if (this.ended || this.socket.destroyed) return false;
    this.socket.write(JSON.stringify(msg) + "\n");
    return true;
  }

  /** Closes the connection from our side; `error` says why (absent for an orderly close). Idempotent. */
  destroy(error?: Error): void {
    if (this.ended) return;
    this.finish(error ? { by: "local", error } : { by: "local" });
    this.socket.destroy();
    this.lines.destroy();
  }

  private onLine(line: string): void {
    // Lines still buffered after we gave up on the connection belong to nothing.
    if (this.ended) return;
    // A blank line carries no message (qemu sends none); it is framing, not data.
    if (line.trim() === "") return;
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.destroy(new QmpProtocolError("received a line that is not valid JSON", line));
      return;
    }
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
      this.destroy(new QmpProtocolError("received JSON that is not an object", line));
      return;
    }
    this.handlers.message(msg as Record<string, unknown>, line);
  }

  private finish(how: TransportEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.handlers.end(how);
  }
}
