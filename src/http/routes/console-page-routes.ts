// The console a customer's browser opens with a ticket: the page, its static
// files, and the WebSocket of the session. These are the only routes on the TCP
// listener that do without the peer token (console-ticket-auth.ts); the ticket
// is checked here. The page may be loaded while the ticket is unused; the
// WebSocket uses it up, so a ticket opens exactly one session.
import path from "node:path";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { WebSocket } from "ws";
import { z } from "zod";
import {
  ConsoleBusy,
  ConsoleOriginRefused,
  ConsoleTicketRefused,
  ConsoleTicketSpent,
  InternalError,
  TooManyClients,
  ValidationFailed,
  VmhError,
  VmNotFound,
  VmStateConflict,
} from "../../errors.js";
import { ConsoleEnd } from "../../vm/console/console-hub.js";
import type { ConsoleTicketGrant, ConsoleTicketStore } from "../../vm/console/console-tickets.js";
import { checkVnc, openVncSession } from "../../vm/console/vnc-session.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { peerAddress, type ClientSlots } from "../client-slots.js";
import { CONSOLE_ASSETS_PREFIX, CONSOLE_PAGE_ROUTE, CONSOLE_SOCKET_ROUTE, checkConsoleOrigin } from "../console-ticket-auth.js";
import { consolePageHeaders, renderConsolePage, renderTicketProblemPage } from "../console-page.js";
import { content, noContent, problems } from "../response-schemas.js";
import { pipeConsole, viewerOf } from "./console-socket-routes.js";

export interface ConsolePageDeps {
  registry: VmRegistry;
  tickets: ConsoleTicketStore;
  /** --console-origin: the panel's origins, allowed besides the page's own. */
  origins: readonly string[];
  streams: ClientSlots;
  /** A valid ticket was shown on this connection: on TCP it stops counting as unauthenticated. */
  authenticated(socket: Socket): void;
}

/**
 * dist/web/console: the page's script and styles, with noVNC and xterm.js copied from node_modules by scripts/build.sh.
 * Reached from tsc's dist/src/http/routes or from the bundle's dist/bundle, whichever this code runs from.
 */
const codeDir = path.dirname(fileURLToPath(import.meta.url));
export const CONSOLE_ASSETS_DIR = path.resolve(codeDir, path.basename(codeDir) === "bundle" ? "../web/console" : "../../../web/console");

const ticketParams = z.object({ ticket: z.string().min(1).max(256).describe("the console ticket, as minted") }).strict();
const noQuery = z.object({}).strict();

/** What the ticket routes answer besides success: never a 401, since they take no token. */
const ticketProblems = [InternalError, ValidationFailed, ConsoleTicketRefused, ConsoleTicketSpent, VmNotFound] as const;

export function registerConsolePageRoutes(app: FastifyInstance, deps: ConsolePageDeps): void {
  void app.register(fastifyStatic, {
    root: CONSOLE_ASSETS_DIR,
    prefix: CONSOLE_ASSETS_PREFIX,
    decorateReply: false,
    index: false,
    list: false,
    setHeaders: (reply) => void reply.header("x-content-type-options", "nosniff"),
  });
  pageRoute(app, deps);
  // From a plugin, so it is added after @fastify/websocket has loaded (see console-socket-routes.ts).
  void app.register(async (scope) => socketRoute(scope, deps));
}

function pageRoute(app: FastifyInstance, deps: ConsolePageDeps): void {
  app.withTypeProvider<ZodTypeProvider>().get(
    CONSOLE_PAGE_ROUTE,
    {
      schema: {
        operationId: "openConsolePage",
        summary: "the console page for a browser: the VM's screen (noVNC) or serial console (xterm.js), opened with a ticket",
        description: "Takes the ticket in the path instead of the peer token. Loading the page does not use the ticket up; its WebSocket does.",
        security: [],
        params: ticketParams,
        querystring: noQuery,
        response: { 200: content("the page", { "text/html": z.string() }), ...problems(...ticketProblems) },
      },
    },
    async (req, reply) => {
      const headers = consolePageHeaders(deps.origins);
      let grant: ConsoleTicketGrant;
      let state: string;
      try {
        grant = deps.tickets.peek(req.params.ticket);
        state = deps.registry.get(grant.vm).state();
      } catch (err) {
        if (!(err instanceof VmhError)) throw err;
        const title = err instanceof ConsoleTicketSpent && err.reason === "used" ? "This console link was already used" : "This console link cannot be opened";
        // The problem's own status (403, 404, 410), with a page a person can read rather than JSON.
        return reply.status(err.status as never).headers(headers).type("text/html; charset=utf-8").send(renderTicketProblemPage(title, err.message));
      }
      deps.authenticated(req.raw.socket);
      return reply.headers(headers).type("text/html; charset=utf-8").send(renderConsolePage({ ...grant, state }));
    },
  );
}

/** The grant of each upgraded request, from its preHandler (which used the ticket up) to its wsHandler. */
const grants = new WeakMap<object, ConsoleTicketGrant>();

function socketRoute(app: FastifyInstance, deps: ConsolePageDeps): void {
  app.withTypeProvider<ZodTypeProvider>().route({
    method: "GET",
    url: CONSOLE_SOCKET_ROUTE,
    schema: {
      operationId: "openConsoleSocket",
      summary: "the console session of a ticket (WebSocket upgrade): RFB for vnc, the serial bytes for serial",
      description:
        "Uses the ticket up: a second open is refused (410). Refused before the upgrade: an unknown ticket (403), a used or " +
        "expired one (410), an Origin that is neither the page's nor a --console-origin (403), a VM not running (409). " +
        "Closed with 4000 when the VM stops; 4003 when a read-only VNC session sends what cannot be filtered.",
      security: [],
      params: ticketParams,
      querystring: noQuery,
      response: {
        101: noContent("switching to WebSocket"),
        ...problems(...ticketProblems, ConsoleOriginRefused, VmStateConflict, ConsoleBusy, TooManyClients),
      },
    },
    preHandler: async (req) => {
      // A plain GET must not use the ticket up.
      if (req.headers.upgrade?.toLowerCase() !== "websocket") {
        throw new ValidationFailed("this endpoint is a WebSocket: send Connection: Upgrade and Upgrade: websocket", [
          { field: "headers.upgrade", message: "expected websocket" },
        ]);
      }
      checkConsoleOrigin(req.headers.origin, req.headers.host, deps.origins);
      const grant = deps.tickets.peek(req.params.ticket);
      const vm = deps.registry.get(grant.vm);
      if (grant.kind === "vnc") checkVnc(vm);
      else vm.console.check(grant.mode);
      const peer = peerAddress(req.socket.remoteAddress);
      if (deps.streams.refusal(peer)) throw deps.streams.refusalError(peer, "event streams and consoles");
      // Checked and used up in one turn of the event loop: two opens racing cannot both pass.
      grants.set(req, deps.tickets.redeem(req.params.ticket));
      deps.authenticated(req.raw.socket);
    },
    handler: async () => {
      throw new InternalError("the console WebSocket was not upgraded");
    },
    wsHandler: (socket, req) => {
      const grant = grants.get(req);
      const release = deps.streams.take(peerAddress(req.socket.remoteAddress));
      if (!grant || !release) {
        release?.();
        socket.close(ConsoleEnd.tooManyViewers.code, ConsoleEnd.tooManyViewers.reason);
        return;
      }
      try {
        if (grant.kind === "vnc") attachVnc(socket, deps.registry, grant, release);
        else attachSerial(socket, deps.registry, grant, release);
      } catch (err) {
        release();
        const why = err instanceof ConsoleBusy ? ConsoleEnd.writerTaken : err instanceof TooManyClients ? ConsoleEnd.tooManyViewers : ConsoleEnd.vmStopped;
        socket.close(why.code, err instanceof VmhError ? err.message.slice(0, 120) : why.reason);
      }
    },
  });
}

function attachSerial(socket: WebSocket, registry: VmRegistry, grant: ConsoleTicketGrant, release: () => void): void {
  // A read-only viewer's frames reach the hub, which passes on the writer's only.
  pipeConsole(socket, registry.get(grant.vm).console.join(viewerOf(socket), grant.mode), release);
}

function attachVnc(socket: WebSocket, registry: VmRegistry, grant: ConsoleTicketGrant, release: () => void): void {
  pipeConsole(socket, openVncSession(registry.get(grant.vm), grant.mode, viewerOf(socket)), release);
}
