// TCP connections that have not yet shown the peer token. Anyone who can reach
// the port can open them, so they are capped (in all and per peer address) and
// each gets the headers timeout to authenticate: one that has not by then is
// closed, whatever it sent. A connection over a cap gets a 429 problem and is
// closed before any request on it is read. Once a request on it carries the
// right token the connection no longer counts.
//
// Over TLS the server counts the TCP connection (its `connection` event) while
// requests arrive on the TLS socket wrapped around it: the two are matched by the
// peer's address and port, which identify one open connection. A TLS connection
// over a cap is closed without an answer: plain HTTP would not be readable there.
import type { Server } from "node:http";
import type { Socket } from "node:net";
import type { Logger } from "pino";
import { ClientSlots, peerAddress, type SlotLimits } from "./client-slots.js";
import { PROBLEM_CONTENT_TYPE, toProblem } from "./problem.js";

export class UnauthenticatedConnections {
  private readonly slots: ClientSlots;
  private readonly pending = new Map<string, () => void>();
  private readonly refused = new WeakSet<Socket>();
  private tls = false;

  constructor(
    limits: SlotLimits,
    private readonly deadlineMs: number,
    private readonly log: Logger,
  ) {
    this.slots = new ClientSlots(limits);
  }

  /** Counts every connection the server accepts from now on; `tls`: the server is an HTTPS one. */
  watch(server: Server, tls = false): void {
    this.tls = tls;
    server.on("connection", (socket: Socket) => this.admit(socket));
  }

  /** A request on this connection carried the right token. */
  authenticated(socket: Socket): void {
    this.pending.get(connectionKey(socket))?.();
  }

  /** Whether the connection was refused: no request on it may be served. */
  isRefused(socket: Socket): boolean {
    return this.refused.has(socket);
  }

  private admit(socket: Socket): void {
    const peer = peerAddress(socket.remoteAddress);
    const release = this.slots.take(peer);
    if (!release) return this.refuse(socket, peer);
    const key = connectionKey(socket);
    const deadline = setTimeout(() => {
      this.log.debug({ peer }, "connection did not authenticate in time; closed");
      socket.destroy();
    }, this.deadlineMs);
    deadline.unref();
    const done = (): void => {
      clearTimeout(deadline);
      this.pending.delete(key);
      release();
    };
    this.pending.set(key, done);
    socket.once("close", done);
  }

  private refuse(socket: Socket, peer: string | undefined): void {
    this.refused.add(socket);
    const err = this.slots.refusalError(peer, "connections without a valid token yet");
    this.log.warn({ peer, scope: err.fields.scope, limit: err.fields.limit }, "unauthenticated connection refused");
    if (this.tls) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify(toProblem(err));
    const head = [
      "HTTP/1.1 429 Too Many Requests",
      `Content-Type: ${PROBLEM_CONTENT_TYPE}`,
      `Content-Length: ${Buffer.byteLength(body)}`,
      "Retry-After: 10",
      "Connection: close",
    ].join("\r\n");
    // Destroyed once the answer is out, whatever the client sends meanwhile.
    socket.end(`${head}\r\n\r\n${body}`, () => socket.destroy());
    setTimeout(() => socket.destroy(), 1000).unref();
  }
}

/** One open TCP connection, the same for the TCP socket and the TLS socket over it. */
function connectionKey(socket: Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}
