// Live migration: the operator's side (/v1/vms/{name}/migrate; the job it answers
// with is followed under /v1/jobs) and the peer side that a source daemon drives on
// the destination (/v1/incoming).
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { JobRegistry } from "../../jobs/job-registry.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import type { MigrationTarget } from "../../migration/migration-target.js";
import { incomingRequestSchema, migrateRequestSchema } from "../../migration/migration-schema.js";
import * as errors from "../route-errors.js";
import { incomingReplySchema, incomingStateSchema, jobSchema, json, named, noContent, problems, vmSchema } from "../response-schemas.js";
import { emptyBody, vmParams } from "../schemas.js";

const incomingQuery = z.object({ uuid: z.uuid().optional() }).strict();

export interface MigrationDeps {
  jobs: JobRegistry;
  target: MigrationTarget;
}

export function registerMigrationRoutes(app: FastifyInstance, registry: VmRegistry, { target }: MigrationDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    "/v1/vms/:name/migrate",
    {
      schema: {
        operationId: "migrateVm",
        summary: "live-migrate to another host; answers 202 with the job (Location: the job)",
        params: vmParams,
        body: named(migrateRequestSchema, "MigrateRequest"),
        response: { 202: json("the migration job", jobSchema), ...problems(...errors.migration) },
      },
    },
    async (req, reply) => {
      const job = await registry.perform(req.params.name, { kind: "migrate", ...req.body });
      return reply.status(202).header("location", `/v1/jobs/${job.id}`).send(job.view());
    },
  );

  r.post(
    "/v1/incoming",
    {
      schema: {
        operationId: "prepareIncoming",
        summary: "peer API: prepare to receive a VM (the source daemon calls this)",
        body: incomingRequestSchema,
        response: { 201: json("where to send RAM and disks", incomingReplySchema), ...problems(...errors.incoming) },
      },
    },
    async (req, reply) => reply.status(201).send(await target.prepare(req.body)),
  );
  r.get(
    "/v1/incoming/:name",
    {
      schema: {
        operationId: "getIncoming",
        summary: "peer API: preparing, receiving, running (committed) or aborted",
        params: vmParams,
        querystring: incomingQuery,
        response: {
          200: incomingStateSchema,
          // "unknown": this daemon is still adopting the VM; the source must ask again, not guess.
          503: json("unknown yet: the daemon is still adopting the VM; ask again", incomingStateSchema),
          ...problems(...errors.withInput),
        },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      const state = target.state(name, req.query.uuid);
      return reply.status(state === "unknown" ? 503 : 200).send({ name, state });
    },
  );
  r.post(
    "/v1/incoming/:name/commit",
    {
      schema: {
        operationId: "commitIncoming",
        summary: "peer API: RAM arrived and the source is paused: resume the guest here",
        params: vmParams,
        body: emptyBody,
        response: { 200: json("the VM", vmSchema), ...problems(...errors.vmChange, ...errors.qemuCommand) },
      },
    },
    async (req) => (await target.commit(req.params.name)).view(),
  );
  r.delete(
    "/v1/incoming/:name",
    {
      schema: {
        operationId: "abortIncoming",
        summary: "peer API: abort an incoming VM that was not committed",
        params: vmParams,
        body: emptyBody,
        response: { 204: noContent("removed"), ...problems(...errors.vmChange) },
      },
    },
    async (req, reply) => {
      await target.abort(req.params.name, "the source asked");
      return reply.status(204).send();
    },
  );
}
