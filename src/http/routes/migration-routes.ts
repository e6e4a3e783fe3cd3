// Live migration: the operator's side (/v1/vms/{name}/migrate, /v1/jobs) and the
// peer side that a source daemon drives on the destination (/v1/incoming).
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { JobRegistry } from "../../jobs/job-registry.js";
import type { MigrationSource } from "../../migration/migration-source.js";
import type { MigrationTarget } from "../../migration/migration-target.js";
import { incomingRequestSchema, migrateRequestSchema } from "../../migration/migration-schema.js";
import { vmNameSchema } from "../../vm/definition.js";
import { emptyBody, vmParams } from "../schemas.js";
import { parseInput } from "../validation.js";

const jobParams = z.object({ id: z.uuid() }).strict();
const incomingQuery = z.object({ uuid: z.uuid().optional() }).strict();

export interface MigrationDeps {
  jobs: JobRegistry;
  source: MigrationSource;
  target: MigrationTarget;
}

export function registerMigrationRoutes(app: FastifyInstance, { jobs, source, target }: MigrationDeps): void {
  app.post("/v1/vms/:name/migrate", async (req, reply) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const body = parseInput(migrateRequestSchema, req.body ?? {}, "body");
    const job = await source.start(name, body);
    return reply.status(202).header("location", `/v1/jobs/${job.id}`).send(job.view());
  });

  app.get("/v1/jobs", async () => ({ jobs: jobs.list().map((j) => j.view()) }));
  app.get("/v1/jobs/:id", async (req) => jobs.get(parseInput(jobParams, req.params, "params").id).view());
  app.post("/v1/jobs/:id/cancel", async (req, reply) => {
    const job = jobs.get(parseInput(jobParams, req.params, "params").id);
    parseInput(emptyBody, req.body ?? {}, "body");
    job.cancel();
    return reply.status(202).send(job.view());
  });

  app.post("/v1/incoming", async (req, reply) => {
    const body = parseInput(incomingRequestSchema, req.body ?? {}, "body");
    return reply.status(201).send(await target.prepare(body));
  });
  app.get("/v1/incoming/:name", async (req, reply) => {
    const { name } = parseInput(z.object({ name: vmNameSchema }).strict(), req.params, "params");
    const { uuid } = parseInput(incomingQuery, req.query, "query");
    const state = target.state(name, uuid);
    // "unknown": this daemon is still adopting the VM; the source must ask again, not guess.
    return reply.status(state === "unknown" ? 503 : 200).send({ name, state });
  });
  app.post("/v1/incoming/:name/commit", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    parseInput(emptyBody, req.body ?? {}, "body");
    return (await target.commit(name)).view();
  });
  app.delete("/v1/incoming/:name", async (req, reply) => {
    const { name } = parseInput(vmParams, req.params, "params");
    parseInput(emptyBody, req.body ?? {}, "body");
    await target.abort(name, "the source asked");
    return reply.status(204).send();
  });
}
