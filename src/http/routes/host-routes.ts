// The host as the daemon sees it, and a liveness probe.
import type { FastifyInstance } from "fastify";
import type { HostInventory } from "../../host/host-inventory.js";

export function registerHostRoutes(app: FastifyInstance, inventory: HostInventory): void {
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/v1/host", async () => inventory.describe());
}
