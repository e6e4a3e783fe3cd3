// The fastify application: routes, input limits and error mapping. It knows
// nothing of VMs beyond calling the registry.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import websocket from "@fastify/websocket";
import type { Logger } from "pino";
import { RouteNotFound } from "../errors.js";
import type { HostInventory } from "../host/host-inventory.js";
import type { VmRegistry } from "../vm/vm-registry.js";
import { buildOpenApi } from "./openapi.js";
import { errorHandler, sendProblem } from "./problem.js";
import { registerCdromRoutes } from "./routes/cdrom-routes.js";
import { registerDeviceRoutes } from "./routes/device-routes.js";
import { registerConsoleRoutes } from "./routes/console-routes.js";
import { registerConsoleSocketRoutes } from "./routes/console-socket-routes.js";
import { registerDisplayRoutes } from "./routes/display-routes.js";
import { registerHostRoutes } from "./routes/host-routes.js";
import { registerVmRoutes } from "./routes/vm-routes.js";
import { registerMigrationRoutes, type MigrationDeps } from "./routes/migration-routes.js";
import { registerStorageRoutes, type StorageDeps } from "./routes/storage-routes.js";
import { registerEventRoutes } from "./routes/event-routes.js";
import { requirePeerToken } from "./peer-auth.js";
import { registerMetricsRoutes } from "./routes/metrics-routes.js";
import { registerQmpRoutes } from "./routes/qmp-routes.js";
import { observeHttpRequest } from "../metrics/metrics.js";

export interface HttpDeps {
  registry: VmRegistry;
  inventory: HostInventory;
  migration: MigrationDeps;
  /** Pools, and disk backups (jobs in the migration's JobRegistry). */
  storage: StorageDeps;
  log: Logger;
  /** Set for the TCP listener: every request must carry it as a Bearer token. */
  peerToken?: string;
}

export function buildHttpApp({ registry, inventory, migration, storage, log, peerToken }: HttpDeps): FastifyInstance {
  // fastify types its instance by the logger; the routes take the base type.
  const app = Fastify({
    loggerInstance: log.child({ component: "http" }) as FastifyBaseLogger,
    disableRequestLogging: true,
    bodyLimit: 1024 * 1024,
    // A client that sends its request slower than this is cut off.
    requestTimeout: 120_000,
    connectionTimeout: 0,
    return503OnClosing: true,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 256 },
  });
  app.addHook("onResponse", async (req, reply) => {
    // By route pattern, not raw URL, so VM names do not multiply the series; unmatched requests share one.
    observeHttpRequest(req.method, req.routeOptions.url ?? "(unmatched)", reply.statusCode, reply.elapsedTime / 1000);
    req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, "request");
  });
  app.setErrorHandler(errorHandler);
  if (peerToken) requirePeerToken(app, peerToken);
  app.setNotFoundHandler((req, reply) => {
    sendProblem(reply, new RouteNotFound(`no endpoint ${req.method} ${req.url.split("?")[0]}`));
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
  // Built on first request: most daemons are never asked for it.
  let openapi: ReturnType<typeof buildOpenApi> | undefined;
  app.get("/openapi.json", async () => (openapi ??= buildOpenApi()));
  registerHostRoutes(app, inventory);
  registerVmRoutes(app, registry);
  registerConsoleRoutes(app, registry);
  registerConsoleSocketRoutes(app, registry);
  registerDisplayRoutes(app, registry);
  registerMigrationRoutes(app, migration);
  registerCdromRoutes(app, registry);
  registerDeviceRoutes(app, registry);
  registerStorageRoutes(app, registry, storage);
  registerEventRoutes(app, registry.host.bus);
  registerMetricsRoutes(app, registry);
  registerQmpRoutes(app, registry);
  return app;
}
