// Live migration: the operator's side (/v1/vms/{name}/migrate; the job it answers
// with is followed under /v1/jobs) and the peer side that a source daemon drives on
// the destination (/v1/incoming).
import type { X509Certificate } from "node:crypto";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { JobRegistry } from "../../jobs/job-registry.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import type { MigrationTarget } from "../../migration/migration-target.js";
import { incomingRequestSchema, migrateRequestSchema } from "../../migration/migration-schema.js";
import * as errors from "../route-errors.js";
import { incomingReplySchema, incomingStateSchema, jobSchema, json, named, noContent, outcomeRecordResponseSchema, problems, vmSchema } from "../response-schemas.js";
import { migrationIdSchema } from "../../migration/outcome-record.js";
import { EtcdUnreachable, MigrationRecordNotFound, StateDiskFull, StateWriteFailed, VmExists, VmOwnedElsewhere } from "../../errors.js";
import { emptyBody, vmParams } from "../schemas.js";
import { vmNameSchema } from "../../definition/vm-definition.js";
import { LAYER_MAX_BYTES } from "../../migration/layer-files.js";

const incomingQuery = z.object({ uuid: z.uuid().optional() }).strict();
const layerParams = z
  .object({
    name: vmNameSchema,
    dir: z.enum(["disks", "snapshots"]),
    file: z.string().max(100).describe("a snapshot layer (`.qcow2`) or memory state (`.vmstate`), one plain name"),
  })
  .strict();
const layerQuery = z
  .object({
    migration: migrationIdSchema.describe("the migration's id: the layer waits under it for the prepare that takes it in"),
    size: z.coerce.number().int().min(0).max(LAYER_MAX_BYTES).describe("the file's length in bytes: the body must be exactly as long"),
    sha256: z.string().regex(/^[0-9a-f]{64}$/).describe("the sha256 of the body, lower-case hex"),
  })
  .strict();
const migrationParams = z.object({ id: migrationIdSchema.describe("the migration's id (a uuid)") }).strict();
const resolveMigrationSchema = z
  .object({
    outcome: z
      .enum(["committed", "aborted"])
      .describe("committed: the guest runs on the destination (the copy here is removed); aborted: it never will (resumed here)"),
  })
  .strict();

const layerReplySchema = z.object({ file: z.string(), bytes: z.number().int() });

/** The verified client certificate of a mutual-TLS connection (the calling host's), if any. */
function callerCertificate(socket: Socket): X509Certificate | undefined {
  const s = socket as Partial<TLSSocket>;
  return s.authorized && typeof s.getPeerX509Certificate === "function" ? s.getPeerX509Certificate() : undefined;
}

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
    async (req, reply) => reply.status(201).send(await target.prepare(req.body, callerCertificate(req.raw.socket))),
  );
  // A snapshot layer's bytes: the body is the file itself, streamed to disk, never buffered.
  app.register(async (scoped) => {
    scoped.addContentTypeParser("application/octet-stream", (_req, payload, done) => done(null, payload));
    scoped.withTypeProvider<ZodTypeProvider>().put(
      "/v1/incoming/:name/layers/:dir/:file",
      {
        schema: {
          operationId: "putIncomingLayer",
          summary: "peer API: one snapshot layer or memory state of a VM about to migrate here (storage copy), before its prepare",
          params: layerParams,
          querystring: layerQuery,
          response: { 201: json("the layer is here, checked and durable", layerReplySchema), ...problems(...errors.withBody, VmExists, StateWriteFailed, StateDiskFull) },
        },
      },
      async (req, reply) => {
        const { name, dir, file } = req.params;
        await target.receiveLayer({ vm: name, migration: req.query.migration, file: `${dir}/${file}`, size: req.query.size, sha256: req.query.sha256 }, req.raw);
        return reply.status(201).send({ file: `${dir}/${file}`, bytes: req.query.size });
      },
    );
  });
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
      const state = await target.state(name, req.query.uuid);
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
  r.get(
    "/v1/migrations/:id",
    {
      schema: {
        operationId: "getMigrationOutcome",
        summary: "peer API: the destination's durable record of a migration: prepared, committed or aborted (after any restart)",
        params: migrationParams,
        response: { 200: json("the outcome record", outcomeRecordResponseSchema), ...problems(...errors.withInput, MigrationRecordNotFound) },
      },
    },
    async (req) => await target.outcome(req.params.id),
  );
  r.post(
    "/v1/migrations/:id/acknowledge",
    {
      schema: {
        operationId: "acknowledgeMigrationOutcome",
        summary: "peer API: the source has acted on the outcome; the record is pruned some time later",
        params: migrationParams,
        body: emptyBody,
        response: { 200: json("the outcome record", outcomeRecordResponseSchema), ...problems(...errors.withInput, MigrationRecordNotFound) },
      },
    },
    async (req) => await target.acknowledge(req.params.id),
  );
  r.post(
    "/v1/vms/:name/migration/resolve",
    {
      schema: {
        operationId: "resolveMigration",
        summary: "decide a migration out whose outcome is unknown: committed removes the paused copy here, aborted resumes it",
        params: vmParams,
        body: named(resolveMigrationSchema, "ResolveMigrationRequest"),
        response: { 200: json("the VM (as it was, if committed removed it)", vmSchema), ...problems(...errors.vmChange, VmOwnedElsewhere, EtcdUnreachable) },
      },
    },
    async (req) => await registry.perform(req.params.name, { kind: "resolve-migration", outcome: req.body.outcome }),
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
