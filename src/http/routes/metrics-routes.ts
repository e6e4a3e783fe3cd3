// GET /metrics: the Prometheus text format, for a scraper over --listen (with the
// peer token) or a local exporter on the Unix socket.
import type { FastifyInstance } from "fastify";
import { metricsContentType } from "../../metrics/metric-hooks.js";
import { renderMetrics } from "../../metrics/vm-metrics.js";
import type { VmRegistry } from "../../vm/vm-registry.js";

export function registerMetricsRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.get("/metrics", async (_req, reply) => {
    const text = await renderMetrics(registry.list());
    return reply.type(metricsContentType).send(text);
  });
}
