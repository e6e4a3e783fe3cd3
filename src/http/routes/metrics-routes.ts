// GET /metrics: the Prometheus text format, for a scraper over --listen (with the
// peer token) or a local exporter on the Unix socket.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { metricsContentType } from "../../metrics/metric-hooks.js";
import { renderMetrics } from "../../metrics/vm-metrics.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { content, problems } from "../response-schemas.js";

export function registerMetricsRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.withTypeProvider<ZodTypeProvider>().get(
    "/metrics",
    {
      schema: {
        operationId: "metrics",
        summary: "Prometheus metrics (text format 0.0.4)",
        response: { 200: content("the metrics", { [metricsContentType.split(";")[0]!]: z.string() }), ...problems(...errors.anyRequest) },
      },
    },
    async (_req, reply) => {
      const text = await renderMetrics(registry.list());
      return reply.type(metricsContentType).send(text);
    },
  );
}
