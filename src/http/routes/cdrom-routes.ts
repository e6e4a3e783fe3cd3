// /v1/vms/{name}/cdrom: what the VM's CD-ROM drive holds, and changing or
// ejecting its disc. Each change is one VmAction; the answer is the drive as it
// is afterwards, read from qemu when the VM runs.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { cdromStatus } from "../../vm/devices/cdrom-drive.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { cdromSchema, json, problems } from "../response-schemas.js";
import { cdromChangeBody, emptyBody, vmParams } from "../schemas.js";

export function registerCdromRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/vms/:name/cdrom",
    {
      schema: {
        operationId: "getCdrom",
        summary: "the CD-ROM drive: the definition's ISO and, while qemu runs, its disc and tray",
        params: vmParams,
        response: { 200: json("the drive", cdromSchema), ...problems(...errors.onVm, ...errors.qemuCommand) },
      },
    },
    async (req) => cdromStatus(registry.get(req.params.name)),
  );

  r.post(
    "/v1/vms/:name/cdrom",
    {
      schema: {
        operationId: "changeCdrom",
        summary: "put an ISO into the drive (at once on a running VM) and record it in the definition",
        params: vmParams,
        body: cdromChangeBody,
        response: { 200: json("the drive afterwards", cdromSchema), ...problems(...errors.vmChange, ...errors.qemuCommand, ...errors.definitionFiles) },
      },
    },
    async (req) => {
      await registry.perform(req.params.name, { kind: "change-cdrom", image: req.body.image });
      return cdromStatus(registry.get(req.params.name));
    },
  );

  r.delete(
    "/v1/vms/:name/cdrom",
    {
      schema: {
        operationId: "ejectCdrom",
        summary: "eject the disc (forced: a guest lock is overridden); the drive stays, empty",
        params: vmParams,
        body: emptyBody,
        response: { 200: json("the drive afterwards", cdromSchema), ...problems(...errors.vmChange, ...errors.qemuCommand) },
      },
    },
    async (req) => {
      await registry.perform(req.params.name, { kind: "eject-cdrom" });
      return cdromStatus(registry.get(req.params.name));
    },
  );
}
