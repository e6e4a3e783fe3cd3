// Storage: the pools and their free space, and operations on a VM's disks
// (resize and backup are actions the registry performs; a backup answers with its job).
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { StoragePools } from "../../storage/storage-pools.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { jobSchema, json, problems, poolListSchema, vmSchema } from "../response-schemas.js";
import { diskBackupBody, diskParams, diskResizeBody } from "../storage-schemas.js";

export interface StorageDeps {
  pools: StoragePools;
}

export function registerStorageRoutes(app: FastifyInstance, registry: VmRegistry, { pools }: StorageDeps): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/pools",
    {
      schema: {
        operationId: "listPools",
        summary: "storage pools: name, directory, free and total bytes",
        response: { 200: poolListSchema, ...problems(...errors.anyRequest) },
      },
    },
    async () => ({ pools: await pools.usage() }),
  );

  r.post(
    "/v1/vms/:name/disks/:disk/resize",
    {
      schema: {
        operationId: "resizeDisk",
        summary: "grow one of the VM's own disks (live through block_resize when it runs) and record the size",
        params: diskParams,
        body: diskResizeBody,
        response: { 200: json("the VM", vmSchema), ...problems(...errors.diskResize) },
      },
    },
    async (req) => registry.perform(req.params.name, { kind: "resize-disk", disk: req.params.disk, sizeGiB: req.body.sizeGiB }),
  );

  r.post(
    "/v1/vms/:name/disks/:disk/backup",
    {
      schema: {
        operationId: "backUpDisk",
        summary: "live backup of a running VM's disk to a new image in a pool (Location: the job)",
        description: "blockdev-backup with sync full; answers 202 with the job.",
        params: diskParams,
        body: diskBackupBody,
        response: { 202: json("the backup job", jobSchema), ...problems(...errors.backup) },
      },
    },
    async (req, reply) => {
      const job = await registry.perform(req.params.name, { kind: "backup", disk: req.params.disk, ...req.body });
      return reply.status(202).header("location", `/v1/jobs/${job.id}`).send(job.view());
    },
  );
}
