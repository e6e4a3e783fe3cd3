// The interactive serial console: a WebSocket per viewer, relayed by the VM's
// console hub. Guest output goes out as binary frames; the writer's frames
// (binary or text) go to the guest as raw bytes. A refusal (no such VM, VM not
// running, the console already has a writer) is answered before the upgrade, as
// a problem document, so a client gets the same codes as anywhere else. Each
// viewer holds one of the listener's stream slots (and its peer's) while open.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { WebSocket, RawData } from "ws";
import { ConsoleBusy, TooManyClients, ValidationFailed, VmhError } from "../../errors.js";
import { ConsoleEnd, type ConsoleViewer } from "../../vm/console/console-hub.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { noContent, problems } from "../response-schemas.js";
import { consoleQuery, vmParams } from "../schemas.js";
import { peerAddress, type ClientSlots } from "../client-slots.js";

export function registerConsoleSocketRoutes(app: FastifyInstance, registry: VmRegistry, streams: ClientSlots): void {
  // Declared from a plugin so that it is added after @fastify/websocket has loaded
  // (fastify loads plugins in order); a route added before it would not be upgraded.
  void app.register(async (scope) => consoleRoute(scope, registry, streams));
}

function consoleRoute(app: FastifyInstance, registry: VmRegistry, streams: ClientSlots): void {
  app.withTypeProvider<ZodTypeProvider>().route({
    method: "GET",
    url: "/v1/vms/:name/console",
    schema: {
      operationId: "attachConsole",
      summary: "interactive serial console (WebSocket upgrade): guest output as binary frames, the writer's frames to the guest",
      description:
        "mode=rw for the one writer, mode=ro (default) to watch. Closed with 4000 when qemu exits, 4001 if its console " +
        "connection is lost, 4002 for a viewer too far behind; 429 beyond --max-console-viewers or the listener's stream caps. " +
        "A plain GET without Upgrade: websocket is refused (400).",
      params: vmParams,
      querystring: consoleQuery,
      response: { 101: noContent("switching to WebSocket"), ...problems(...errors.consoleSocket) },
    },
    preHandler: async (req) => {
      const { name } = req.params;
      const { mode } = req.query;
      registry.get(name).console.check(mode);
      const peer = peerAddress(req.socket.remoteAddress);
      if (streams.refusal(peer)) throw streams.refusalError(peer, "event streams and consoles");
    },
    // A plain GET (no upgrade) of a WebSocket endpoint.
    handler: async () => {
      throw new ValidationFailed("this endpoint is a WebSocket: send Connection: Upgrade and Upgrade: websocket", [
        { field: "headers.upgrade", message: "expected websocket" },
      ]);
    },
    // Runs right after preHandler in the same turn of the event loop, so the writer
    // seen free there is still free here; a refusal after all closes the socket.
    wsHandler: (socket, req) => {
      const { name } = req.params;
      const { mode } = req.query;
      let attachment;
      const release = streams.take(peerAddress(req.socket.remoteAddress));
      try {
        if (!release) throw streams.refusalError(peerAddress(req.socket.remoteAddress), "event streams and consoles");
        attachment = registry.get(name).console.join(viewerOf(socket), mode);
      } catch (err) {
        release?.();
        const why = err instanceof ConsoleBusy ? ConsoleEnd.writerTaken : err instanceof TooManyClients ? ConsoleEnd.tooManyViewers : ConsoleEnd.vmStopped;
        socket.close(why.code, err instanceof VmhError ? err.message.slice(0, 120) : why.reason);
        return;
      }
      pipeConsole(socket, attachment, release);
    },
  });
}

/** A viewer whose peer vanished without closing (a TCP client whose network went away) must not keep the writer's place. */
const PING_INTERVAL_MS = 30_000;

/**
 * Feeds the socket's frames to a console attachment (the serial hub, or a VNC
 * session) and, once the socket closes, leaves it and frees the client's slot.
 */
export function pipeConsole(socket: WebSocket, attachment: { input(data: Buffer): void; leave(): void }, release: () => void): void {
  socket.on("message", (data: RawData) => attachment.input(toBuffer(data)));
  const heartbeat = keepAlive(socket);
  socket.on("close", () => {
    clearInterval(heartbeat);
    attachment.leave();
    release();
  });
}

export function keepAlive(socket: WebSocket): NodeJS.Timeout {
  let answered = true;
  socket.on("pong", () => (answered = true));
  return setInterval(() => {
    if (!answered) return socket.terminate();
    answered = false;
    socket.ping();
  }, PING_INTERVAL_MS);
}

export function viewerOf(socket: WebSocket): ConsoleViewer {
  return {
    send: (data) => {
      if (socket.readyState === socket.OPEN) socket.send(data, { binary: true });
    },
    // A close reason is limited to 123 bytes by the protocol.
    end: (code, reason) => socket.close(code, reason.slice(0, 120)),
    get backlog() {
      return socket.bufferedAmount;
    },
    pause: () => socket.pause(),
    resume: () => socket.resume(),
  };
}

export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
