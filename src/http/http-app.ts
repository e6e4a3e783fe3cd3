// The fastify application: routes, input limits and error mapping. It knows
// nothing of VMs beyond calling the registry.
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { RouteNotFound } from "../errors.js";
import type { HostInventory } from "../host/host-inventory.js";
import type { VmRegistry } from "../vm/vm-registry.js";
import { buildOpenApi } from "./openapi.js";
import { errorHandler, sendProblem } from "./problem.js";
import { registerConsoleRoutes } from "./routes/console-routes.js";
import { registerHostRoutes } from "./routes/host-routes.js";
import { registerVmRoutes } from "./routes/vm-routes.js";

export interface HttpDeps {
  registry: VmRegistry;
  inventory: HostInventory;
  log: Logger;
}

export function buildHttpApp({ registry, inventory, log }: HttpDeps): FastifyInstance {
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
    req.log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, "request");
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => {
    sendProblem(reply, new RouteNotFound(`no endpoint ${req.method} ${req.url.split("?")[0]}`));
  });

  const openapi = buildOpenApi();
  app.get("/openapi.json", async () => openapi);
  registerHostRoutes(app, inventory);
  registerVmRoutes(app, registry);
  registerConsoleRoutes(app, registry);
  return app;
}
