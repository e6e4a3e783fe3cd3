// Requests over TCP come from other hosts (peer daemons, orchestrators) and must
// carry the shared token: `Authorization: Bearer <token>`, compared in constant
// time. The Unix socket is authorised by its file mode and group instead.
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { Unauthorized } from "../errors.js";
import type { UnauthenticatedConnections } from "./unauthenticated-connections.js";
import { takesConsoleTicket } from "./console-ticket-auth.js";

export function requirePeerToken(app: FastifyInstance, token: string, unauthenticated?: UnauthenticatedConnections): void {
  // Hashing first gives equal-length buffers whatever the client sent.
  const want = createHash("sha256").update(token).digest();
  app.addHook("onRequest", async (req, reply) => {
    if (unauthenticated?.isRefused(req.raw.socket)) {
      // Already answered 429 and closing: nothing on this connection is served.
      reply.hijack();
      req.raw.socket.destroy();
      return;
    }
    // The console page and its WebSocket check their ticket themselves (console-page-routes.ts).
    if (takesConsoleTicket(req.routeOptions.url)) return;
    const header = req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const got = createHash("sha256").update(m?.[1] ?? "").digest();
    if (!m || !timingSafeEqual(want, got)) {
      throw new Unauthorized(m ? "wrong peer token" : "requests over TCP need Authorization: Bearer <peer token>", {
        field: "authorization",
      });
    }
    unauthenticated?.authenticated(req.raw.socket);
  });
}
