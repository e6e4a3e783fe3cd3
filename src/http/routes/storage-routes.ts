// Storage: the pools and their free space, and operations on a VM's disks
// (resize is a VmAction under the VM's operation lock; backup is a job).
import type { FastifyInstance } from "fastify";
import type { StoragePools } from "../../storage/storage-pools.js";
import type { DiskBackups } from "../../vm/disk-backup.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { diskBackupBody, diskParams, diskResizeBody } from "../storage-schemas.js";
import { parseInput } from "../validation.js";

export interface StorageDeps {
  pools: StoragePools;
  backups: DiskBackups;
}

export function registerStorageRoutes(app: FastifyInstance, registry: VmRegistry, { pools, backups }: StorageDeps): void {
  app.get("/v1/pools", async () => ({ pools: await pools.usage() }));

  app.post("/v1/vms/:name/disks/:disk/resize", async (req) => {
    const { name, disk } = parseInput(diskParams, req.params, "params");
    const { sizeGiB } = parseInput(diskResizeBody, req.body ?? {}, "body");
    return registry.perform(name, { kind: "resize-disk", disk, sizeGiB });
  });

  app.post("/v1/vms/:name/disks/:disk/backup", async (req, reply) => {
    const { name, disk } = parseInput(diskParams, req.params, "params");
    const body = parseInput(diskBackupBody, req.body ?? {}, "body");
    const job = await backups.start(name, disk, body);
    return reply.status(202).header("location", `/v1/jobs/${job.id}`).send(job.view());
  });
}
