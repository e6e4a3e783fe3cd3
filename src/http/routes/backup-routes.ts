// GET /v1/vms/{name}/disks/{disk}/backups: the disk's recorded backups, each with
// its id (what `since` names), mode, image and the backup it builds on.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { DeviceNotFound } from "../../errors.js";
import { backupsOf, readBackupRecord } from "../../vm/backups/backup-record.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { json, problems } from "../response-schemas.js";
import { diskParams } from "../storage-schemas.js";

const backupListSchema = z.object({
  backups: z.array(
    z.object({
      id: z.string(),
      mode: z.enum(["full", "incremental"]),
      target: z.string().describe("the pool path the backup was written to"),
      parent: z.string().optional().describe("the backup an incremental one is an overlay of"),
      createdAt: z.string(),
      bytes: z.number(),
    }),
  ),
  pending: z.string().optional().describe("a backup begun and not recorded (cut short): the next one is full"),
});

export function registerBackupRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.withTypeProvider<ZodTypeProvider>().get(
    "/v1/vms/:name/disks/:disk/backups",
    {
      schema: {
        operationId: "listDiskBackups",
        summary: "the disk's backups, oldest first: ids for `since`, full or incremental, and each one's parent",
        params: diskParams,
        response: { 200: json("the backups", backupListSchema), ...problems(...errors.onVm, DeviceNotFound) },
      },
    },
    async (req) => {
      const vm = registry.get(req.params.name);
      const disk = req.params.disk;
      if (!vm.definition.disks.some((d) => d.name === disk)) throw new DeviceNotFound(`VM "${vm.name}" has no disk "${disk}"`, { vm: vm.name, disk });
      const record = await readBackupRecord(vm.paths);
      const backups = backupsOf(record, disk).map(({ id, mode, target, parent, createdAt, bytes }) => ({ id, mode, target, createdAt, bytes, ...(parent ? { parent } : {}) }));
      return { backups, ...(record.pending[disk] ? { pending: record.pending[disk] } : {}) };
    },
  );
}
