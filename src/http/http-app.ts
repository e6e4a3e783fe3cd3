// The fastify application: routes, input limits and error mapping. It knows
// nothing of VMs beyond calling the registry.
import type { Server as TlsServer } from "node:tls";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync } from "fastify";
import websocket from "@fastify/websocket";
import { validatorCompiler } from "fastify-type-provider-zod";
import type { Logger } from "pino";
import { RouteNotFound } from "../errors.js";
import type { HostInventory } from "../host/host-inventory.js";
import type { VmRegistry } from "../vm/vm-registry.js";
import { registerApiDocument, registerApiDocumentRoute } from "./openapi.js";
import { errorHandler, sendProblem } from "./problem.js";
import { registerCdromRoutes } from "./routes/cdrom-routes.js";
import { registerDeviceRoutes } from "./routes/device-routes.js";
import { registerConsoleRoutes } from "./routes/console-routes.js";
import { registerConsoleSocketRoutes } from "./routes/console-socket-routes.js";
import { registerDisplayRoutes } from "./routes/display-routes.js";
import { registerHostRoutes } from "./routes/host-routes.js";
import { registerVmRoutes } from "./routes/vm-routes.js";
import { registerJobRoutes } from "./routes/job-routes.js";
import { registerMigrationRoutes, type MigrationDeps } from "./routes/migration-routes.js";
import { registerStorageRoutes, type StorageDeps } from "./routes/storage-routes.js";
import { registerSnapshotRoutes } from "./routes/snapshot-routes.js";
import { registerBackupRoutes } from "./routes/backup-routes.js";
import { registerExportRoutes } from "./routes/export-routes.js";
import { registerEventRoutes } from "./routes/event-routes.js";
import { requirePeerToken } from "./peer-auth.js";
import { ClientSlots, type SlotLimits } from "./client-slots.js";
import { UnauthenticatedConnections } from "./unauthenticated-connections.js";
import { registerMetricsRoutes } from "./routes/metrics-routes.js";
import { registerQmpRoutes } from "./routes/qmp-routes.js";
import { registerCloudInitRoutes } from "./routes/cloud-init-routes.js";
import { registerLimitsRoutes } from "./routes/limits-routes.js";
import { registerFleetRoutes } from "./routes/fleet-routes.js";
import { registerMaintenanceRoutes } from "./routes/maintenance-routes.js";
import type { HostMaintenance } from "../host/maintenance/host-maintenance.js";
import { observeHttpRequest } from "../metrics/metric-hooks.js";
import type { TlsFiles } from "../tls/tls-files.js";
import { ConsoleTicketStore } from "../vm/console/console-tickets.js";
import { redactConsoleTicket } from "./console-ticket-auth.js";
import { registerConsolePageRoutes } from "./routes/console-page-routes.js";
import { registerConsoleTicketRoutes } from "./routes/console-ticket-routes.js";

export interface HttpDeps {
  registry: VmRegistry;
  inventory: HostInventory;
  migration: MigrationDeps;
  /** Host maintenance: evacuate and resume. */
  maintenance: HostMaintenance;
  /** The storage pools. */
  storage: StorageDeps;
  log: Logger;
  /** Set for the TCP listener: every request must carry one of them as a Bearer token. */
  peerTokens?: readonly string[];
  /** TCP listener with --tls-cert: HTTPS with these credentials (client certificates required with --tls-ca). */
  tls?: TlsFiles;
  /** Open connections on this listener beyond which new ones are closed (default HTTP_LIMITS.connections). */
  maxConnections?: number;
  /** Event streams and console sockets open at once on this listener (per peer: TCP only). */
  streams?: SlotLimits;
  /** TCP listener: connections that have not yet shown the token, in all and per peer. */
  unauthenticated?: SlotLimits;
  /** Console tickets, shared by the listeners (minted on either, opened on TCP), and where browsers reach the page. */
  consoles?: ConsoleDeps;
}

export interface ConsoleDeps {
  tickets: ConsoleTicketStore;
  /** --console-origin */
  origins: readonly string[];
  /** The TCP listener's address as browsers reach it (http://HOST:PORT); empty: ticket URLs are paths. */
  urlBase: string;
}

/** What one client may ask of a listener; README "Security" lists them. */
export const HTTP_LIMITS = {
  bodyBytes: 1024 * 1024,
  headerBytes: 16 * 1024,
  /** Time to receive the request line and headers. */
  headersMs: 10_000,
  /** Time to receive the whole request, body included. */
  requestMs: 30_000,
  keepAliveMs: 5_000,
  /** Open connections per listener (event streams and consoles count); more are closed at once. `--max-connections`. */
  connections: 512,
  /** Event streams and consoles per listener (`--max-streams`) and per TCP peer (`--max-streams-per-peer`). */
  streams: 128,
  streamsPerPeer: 16,
  /** TCP connections without a valid token yet (`--max-unauthenticated`, `--max-unauthenticated-per-peer`). */
  unauthenticated: 64,
  unauthenticatedPerPeer: 16,
} as const;

export function buildHttpApp(deps: HttpDeps): FastifyInstance {
  const { registry, inventory, migration, storage, log, maxConnections, tls } = deps;
  const peerTokens = deps.peerTokens && deps.peerTokens.length > 0 ? deps.peerTokens : undefined;
  // Node answers 431 to a request line + headers over this, before any route runs.
  // The timeouts below are checked this often (node's default is 30 s).
  const serverOptions = { maxHeaderSize: HTTP_LIMITS.headerBytes, connectionsCheckingInterval: 1000 };
  // fastify types its instance by the logger and server; the routes take the base types.
  const app = Fastify({
    loggerInstance: log.child({ component: "http" }) as FastifyBaseLogger,
    // Requests are logged by the onResponse hook below, at debug (the top-level option is deprecated).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: HTTP_LIMITS.bodyBytes,
    // fastify hands an https server only its `https` options: the HTTP limits go there too.
    ...(tls ? { https: { ...serverOptions, ...tls.serverOptions() } } : { http: serverOptions }),
    // A client that sends its request slower than this is cut off (408). Only
    // receiving the request counts: an event stream or a console may stay open.
    requestTimeout: HTTP_LIMITS.requestMs,
    keepAliveTimeout: HTTP_LIMITS.keepAliveMs,
    connectionTimeout: 0,
    return503OnClosing: true,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 256 },
  }) as unknown as FastifyInstance;
  if (tls) tls.attach(app.server as unknown as TlsServer);
  app.addHook("onResponse", async (req, reply) => {
    // By route pattern, not raw URL, so VM names do not multiply the series; unmatched requests share one.
    observeHttpRequest(req.method, req.routeOptions.url ?? "(unmatched)", reply.statusCode, reply.elapsedTime / 1000);
    req.log.debug({ method: req.method, url: redactConsoleTicket(req.url), status: reply.statusCode, ms: reply.elapsedTime }, "request");
  });
  app.server.headersTimeout = HTTP_LIMITS.headersMs;
  app.server.maxConnections = maxConnections ?? HTTP_LIMITS.connections;
  // The API speaks JSON only: any other body is a 415, not a string for zod to puzzle over.
  app.removeContentTypeParser("text/plain");
  app.setErrorHandler(errorHandler);
  // Each route's zod schemas check its input (a refusal is mapped to VMH_ERR_VALIDATION
  // in errorHandler). Its response schemas document the answer, but do not filter it:
  // the client gets every field the route returns, as before the schemas existed.
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  // No body (or JSON null) is an empty object, so that `{}`-shaped schemas accept a bare POST.
  app.addHook("preValidation", async (req) => {
    if (req.body == null && req.routeOptions.schema?.body) req.body = {};
  });
  // Peers are told apart by address on TCP only: on the Unix socket every client has none.
  const streams = new ClientSlots({
    total: deps.streams?.total ?? HTTP_LIMITS.streams,
    ...(peerTokens ? { perPeer: deps.streams?.perPeer ?? HTTP_LIMITS.streamsPerPeer } : {}),
  });
  let unauthenticated: UnauthenticatedConnections | undefined;
  if (peerTokens) {
    unauthenticated = new UnauthenticatedConnections(
      deps.unauthenticated ?? { total: HTTP_LIMITS.unauthenticated, perPeer: HTTP_LIMITS.unauthenticatedPerPeer },
      HTTP_LIMITS.headersMs,
      log.child({ component: "http" }),
    );
    unauthenticated.watch(app.server, tls !== undefined);
    requirePeerToken(app, peerTokens, unauthenticated, tls?.verifiesClients === true);
  }
  app.setNotFoundHandler((req, reply) => {
    sendProblem(reply, new RouteNotFound(`no endpoint ${req.method} ${redactConsoleTicket(req.url.split("?")[0]!)}`));
  });

  // Before the routes, so it sees them (the serial console is a WebSocket). A
  // console frame is keystrokes or a paste; a larger one closes the socket (1009).
  void app.register(websocket, {
    options: { maxPayload: 64 * 1024 },
    // The daemon is stopping: viewers are told it is going away (1001), then attach to the next one.
    preClose(done) {
      for (const client of this.websocketServer.clients) client.close(1001, "vmhostd is stopping");
      done();
    },
  });
  registerApiDocument(app);
  // Added once the document's collector has loaded (fastify loads plugins in order), so it
  // sees every route; in the root context (skip-override), as if declared at the top level.
  const consoles = deps.consoles ?? { tickets: new ConsoleTicketStore(), origins: [], urlBase: "" };
  const routes: FastifyPluginAsync = async (scope) => {
    registerApiDocumentRoute(scope);
    registerHostRoutes(scope, inventory);
    registerVmRoutes(scope, registry);
    registerConsoleRoutes(scope, registry);
    registerConsoleSocketRoutes(scope, registry, streams);
    registerDisplayRoutes(scope, registry);
    registerConsoleTicketRoutes(scope, { registry, tickets: consoles.tickets, consoleUrlBase: consoles.urlBase });
    registerConsolePageRoutes(scope, { registry, tickets: consoles.tickets, origins: consoles.origins, streams, authenticated: (s) => unauthenticated?.authenticated(s) });
    registerMigrationRoutes(scope, registry, migration);
    registerJobRoutes(scope, migration.jobs);
    registerCdromRoutes(scope, registry);
    registerDeviceRoutes(scope, registry);
    registerStorageRoutes(scope, registry, storage);
    registerSnapshotRoutes(scope, registry);
    registerBackupRoutes(scope, registry);
    registerExportRoutes(scope, registry);
    registerEventRoutes(scope, registry.host.bus, streams);
    registerMetricsRoutes(scope, registry);
    registerQmpRoutes(scope, registry);
    registerCloudInitRoutes(scope, registry);
    registerLimitsRoutes(scope, registry);
    registerFleetRoutes(scope, registry);
    registerMaintenanceRoutes(scope, deps.maintenance);
  };
  Object.assign(routes, { [Symbol.for("skip-override")]: true });
  void app.register(routes);
  return app;
}
