// Pull-mode backup over NBD: POST .../disks/{disk}/export starts a read-only
// export of the disk as it is at that instant (with its dirty bitmap), GET
// .../exports lists the VM's, DELETE .../disks/{disk}/export ends one.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { DeviceNotFound, ExportExists, ExportNotFound, StorageFailed } from "../../errors.js";
import { exportsServing } from "../../vm/backups/disk-export.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { json, problems, vmSchema } from "../response-schemas.js";
import { vmParams } from "../schemas.js";
import { diskParams } from "../storage-schemas.js";

const exportSchema = z.object({
  id: z.string(),
  disk: z.string(),
  createdAt: z.string().describe("the instant whose content the export serves"),
  socket: z.string().optional().describe("the NBD server's Unix socket (the daemon's group may connect); absent for TLS"),
  tls: z.boolean().describe("on TCP with TLS: the client presents a certificate the daemon's --tls-ca signed"),
  exportName: z.string(),
  uri: z.string().describe("an NBD URI for qemu-img, nbdinfo, nbdcopy, virtnbdbackup"),
  bitmap: z.string().optional().describe("the published dirty bitmap: read it as qemu:dirty-bitmap:<bitmap>"),
});

const exportBody = z
  .object({
    tls: z.boolean().optional().describe("serve on TCP with TLS (the host's migration address) instead of the Unix socket"),
    speedMiBps: z.number().positive().optional().describe("bandwidth limit of the point-in-time copy, so it does not starve the guest's own I/O"),
  })
  .strict()
  .optional();

export function registerExportRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    "/v1/vms/:name/disks/:disk/export",
    {
      schema: {
        operationId: "exportDisk",
        summary: "a read-only NBD export of the disk as it is now, with its dirty bitmap, for pull-mode backup tools",
        params: diskParams,
        body: exportBody,
        response: { 201: json("where to read it", exportSchema), ...problems(...errors.vmChange, ...errors.qemuCommand, DeviceNotFound, ExportExists, StorageFailed) },
      },
    },
    async (req, reply) => {
      const { tls, speedMiBps } = req.body ?? {};
      const action = { kind: "export-disk" as const, disk: req.params.disk, ...(tls !== undefined ? { tls } : {}), ...(speedMiBps !== undefined ? { speedMiBps } : {}) };
      return reply.status(201).send(await registry.perform(req.params.name, action));
    },
  );
  r.delete(
    "/v1/vms/:name/disks/:disk/export",
    {
      schema: {
        operationId: "endDiskExport",
        summary: "end the disk's NBD export: its clients are cut off, its image removed",
        params: diskParams,
        response: { 200: json("the VM", vmSchema), ...problems(...errors.vmChange, ExportNotFound) },
      },
    },
    async (req) => registry.perform(req.params.name, { kind: "unexport-disk", disk: req.params.disk }),
  );
  r.get(
    "/v1/vms/:name/exports",
    {
      schema: {
        operationId: "listDiskExports",
        summary: "the VM's pull-mode NBD exports",
        params: vmParams,
        response: { 200: json("the exports", z.object({ exports: z.array(exportSchema) })), ...problems(...errors.onVm) },
      },
    },
    async (req) => ({ exports: await exportsServing(registry.get(req.params.name)) }),
  );
}
