// /v1/vms/{name}/snapshots: take, list, revert to and delete snapshots of a VM's
// disks. Each change is an action the registry performs; a delete merges the
// snapshot away as a job and answers with it.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { vmNameSchema } from "../../definition/vm-definition.js";
import { SnapshotExists, SnapshotNotFound, SnapshotUnsupported, StorageFailed, TooManySnapshots, UnsafeImage } from "../../errors.js";
import { SNAPSHOT_NAME_PATTERN } from "../../vm/snapshots/snapshot-record.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { jobSchema, json, problems, vmSchema } from "../response-schemas.js";

const snapshotName = z.string().regex(SNAPSHOT_NAME_PATTERN, "must be 1-40 characters of a-z, 0-9 and '-', starting with a letter");
const vmParams = z.object({ name: vmNameSchema }).strict();
const snapshotParams = z.object({ name: vmNameSchema, snapshot: snapshotName }).strict();
const createBody = z
  .object({
    name: snapshotName,
    memory: z.boolean().default(false).describe("save the RAM and device state too, so a revert resumes the guest where it was"),
  })
  .strict();
const revertBody = z
  .object({ force: z.boolean().default(false).describe("stop a running VM first (hard stop)") })
  .strict();
const snapshotListSchema = z.object({
  snapshots: z.array(
    z.object({
      name: z.string(),
      createdAt: z.string(),
      memory: z.boolean(),
      parent: z.string().optional(),
      disks: z.array(z.string()),
      bytes: z.number().describe("bytes written since the snapshot (allocated in the layers above it)"),
    }),
  ),
});

const changeErrors = [...errors.vmChange, ...errors.qemuCommand, SnapshotNotFound, SnapshotUnsupported, StorageFailed] as const;

export function registerSnapshotRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/vms/:name/snapshots",
    {
      schema: {
        operationId: "listSnapshots",
        summary: "the VM's snapshots, oldest first",
        params: vmParams,
        response: { 200: json("the snapshots", snapshotListSchema), ...problems(...errors.onVm) },
      },
    },
    async (req) => {
      const vm = registry.get(req.params.name);
      if (!registry.snapshots) throw new Error("no snapshot handler");
      return { snapshots: await registry.snapshots.list(vm) };
    },
  );

  r.post(
    "/v1/vms/:name/snapshots",
    {
      schema: {
        operationId: "createSnapshot",
        summary: "take a snapshot of every disk of the VM's own (running, paused or stopped)",
        description: "Each disk gets a new qcow2 overlay; on a running VM all disks switch in one QMP transaction.",
        params: vmParams,
        body: createBody,
        response: { 201: json("the VM", vmSchema), ...problems(...changeErrors, SnapshotExists, TooManySnapshots) },
      },
    },
    async (req, reply) => {
      const view = await registry.perform(req.params.name, { kind: "snapshot-create", name: req.body.name, memory: req.body.memory });
      return reply.status(201).header("location", `/v1/vms/${req.params.name}/snapshots`).send(view);
    },
  );

  r.post(
    "/v1/vms/:name/snapshots/:snapshot/revert",
    {
      schema: {
        operationId: "revertSnapshot",
        summary: "return every disk to the snapshot (VM stopped, or stopped first with force); later snapshots are dropped",
        params: snapshotParams,
        body: revertBody,
        response: { 200: json("the VM", vmSchema), ...problems(...changeErrors, UnsafeImage) },
      },
    },
    async (req) => registry.perform(req.params.name, { kind: "snapshot-revert", snapshot: req.params.snapshot, force: req.body.force }),
  );

  r.delete(
    "/v1/vms/:name/snapshots/:snapshot",
    {
      schema: {
        operationId: "deleteSnapshot",
        summary: "merge the snapshot away (live: block-commit) as a job (Location: the job)",
        params: snapshotParams,
        response: { 202: json("the merge job", jobSchema), ...problems(...changeErrors) },
      },
    },
    async (req, reply) => {
      const job = await registry.perform(req.params.name, { kind: "snapshot-delete", snapshot: req.params.snapshot });
      return reply.status(202).header("location", `/v1/jobs/${job.id}`).send(job.view());
    },
  );
}
