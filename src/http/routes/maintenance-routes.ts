// Host maintenance: evacuate (enter maintenance and live-migrate every running VM
// away, as one job followed under /v1/jobs) and resume (end it).
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { HostMaintenance } from "../../host/maintenance/host-maintenance.js";
import * as errors from "../route-errors.js";
import { jobSchema, json, named, problems } from "../response-schemas.js";
import { emptyBody } from "../schemas.js";

export const evacuateRequestSchema = named(
  z
    .object({
      to: z
        .array(z.string().min(1).max(512))
        .min(1)
        .max(64)
        .optional()
        .describe("destinations: fleet host ids (fleet mode; default every other live host), or API URLs (required without fleet mode)"),
      parallel: z.number().int().min(1).max(16).default(2).describe("VMs migrating at once"),
      storage: z.enum(["shared", "copy"]).default("copy").describe("as for POST /v1/vms/{name}/migrate"),
      bandwidthMiBps: z.number().int().min(1).max(100_000).optional().describe("bandwidth limit of each migration"),
    })
    .strict(),
  "EvacuateRequest",
);

const maintenanceSchema = named(
  z.object({
    maintenance: z.boolean(),
    maintenanceSince: z.string().optional(),
    evacuation: z.record(z.string(), z.unknown()).optional().describe("the last evacuation: job id, state, counts of VMs by state"),
  }),
  "Maintenance",
);

export function registerMaintenanceRoutes(app: FastifyInstance, maintenance: HostMaintenance): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    "/v1/host/evacuate",
    {
      schema: {
        operationId: "evacuateHost",
        summary: "enter maintenance and live-migrate every running VM away; answers 202 with the job (Location: the job)",
        body: evacuateRequestSchema,
        response: { 202: json("the evacuation job, one item per VM", jobSchema), ...problems(...errors.evacuate) },
      },
    },
    async (req, reply) => {
      const { to, parallel, storage, bandwidthMiBps } = req.body;
      const job = await maintenance.evacuate({ parallel, storage, ...(to ? { to } : {}), ...(bandwidthMiBps ? { bandwidthMiBps } : {}) });
      return reply.status(202).header("location", `/v1/jobs/${job.id}`).send(job.view());
    },
  );
  r.post(
    "/v1/host/resume",
    {
      schema: {
        operationId: "resumeHost",
        summary: "end maintenance (a running evacuation is stopped first); starts and incoming migrations are taken again",
        body: emptyBody,
        response: { 200: json("the host out of maintenance", maintenanceSchema), ...problems(...errors.resumeHost) },
      },
    },
    async () => await maintenance.resume(),
  );
}
