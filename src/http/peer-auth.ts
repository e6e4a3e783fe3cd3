// Requests over TCP come from other hosts (peer daemons, orchestrators) and must
// carry a shared token: `Authorization: Bearer <token>`, compared in constant
// time. During a rotation two tokens are accepted; each is compared, whichever
// matches, so the time taken says nothing of which. Over TLS with --tls-ca the
// client's certificate must have verified against that CA, and the token stays a
// second factor; only the console ticket routes serve a browser without one. The
// Unix socket is authorised by its file mode and group instead.
import { createHash, timingSafeEqual } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { FastifyInstance } from "fastify";
import { Unauthorized } from "../errors.js";
import type { UnauthenticatedConnections } from "./unauthenticated-connections.js";
import { takesConsoleTicket } from "./console-ticket-auth.js";

const digest = (text: string): Buffer => createHash("sha256").update(text).digest();

export function requirePeerToken(
  app: FastifyInstance,
  tokens: readonly string[],
  unauthenticated?: UnauthenticatedConnections,
  /** --tls-ca given: a request needs a client certificate the CA signed. */
  clientCertificates = false,
): void {
  if (tokens.length === 0) throw new Error("requirePeerToken needs at least one token");
  // Hashing first gives equal-length buffers whatever the client sent.
  const wanted = tokens.map(digest);
  app.addHook("onRequest", async (req, reply) => {
    if (unauthenticated?.isRefused(req.raw.socket)) {
      // Already answered 429 and closing: nothing on this connection is served.
      reply.hijack();
      req.raw.socket.destroy();
      return;
    }
    // The console page and its WebSocket check their ticket themselves (console-page-routes.ts).
    if (takesConsoleTicket(req.routeOptions.url)) return;
    if (clientCertificates) {
      const socket = req.raw.socket as TLSSocket;
      if (!socket.authorized) {
        const why = socket.authorizationError ? String(socket.authorizationError) : "none presented";
        throw new Unauthorized(`requests over TLS need a client certificate signed by --tls-ca (${why})`, { field: "certificate" });
      }
    }
    const header = req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const got = digest(m?.[1] ?? "");
    let match = false;
    for (const want of wanted) match = timingSafeEqual(want, got) || match;
    if (!m || !match) {
      throw new Unauthorized(m ? "wrong peer token" : "requests over TCP need Authorization: Bearer <peer token>", {
        field: "authorization",
      });
    }
    unauthenticated?.authenticated(req.raw.socket);
  });
}
