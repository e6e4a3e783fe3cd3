// The host as the daemon sees it, and a liveness probe.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { HostInventory } from "../../host/host-inventory.js";
import * as errors from "../route-errors.js";
import { hostSchema, problems } from "../response-schemas.js";

export function registerHostRoutes(app: FastifyInstance, inventory: HostInventory): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/healthz",
    { schema: { operationId: "healthz", summary: "liveness", response: { 200: z.object({ status: z.literal("ok") }), ...problems(...errors.anyRequest) } } },
    async () => ({ status: "ok" as const }),
  );
  r.get(
    "/v1/host",
    { schema: { operationId: "describeHost", summary: "host inventory", response: { 200: hostSchema, ...problems(...errors.anyRequest) } } },
    async () => inventory.describe(),
  );
}
