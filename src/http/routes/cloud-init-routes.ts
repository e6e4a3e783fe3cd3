// /v1/vms/{name}/cloud-init: the VM's NoCloud seed content. A change is recorded
// in the definition and takes effect at the VM's next start, when the seed is
// made again (cloud-init reads it at boot only).
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { cloudInitSchema } from "../../definition/vm-definition.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { json, named, problems, vmSchema } from "../response-schemas.js";
import { emptyBody, vmParams } from "../schemas.js";

export function registerCloudInitRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.put(
    "/v1/vms/:name/cloud-init",
    {
      schema: {
        operationId: "setCloudInit",
        summary: "set the VM's cloud-init NoCloud seed content; the seed is made again at the next start",
        params: vmParams,
        body: named(cloudInitSchema, "CloudInit"),
        response: { 200: json("the VM", vmSchema), ...problems(...errors.vmChange) },
      },
    },
    async (req) => registry.perform(req.params.name, { kind: "set-cloud-init", cloudInit: req.body }),
  );

  r.delete(
    "/v1/vms/:name/cloud-init",
    {
      schema: {
        operationId: "removeCloudInit",
        summary: "remove the VM's cloud-init seed (from the next start)",
        params: vmParams,
        body: emptyBody,
        response: { 200: json("the VM", vmSchema), ...problems(...errors.vmChange) },
      },
    },
    async (req) => registry.perform(req.params.name, { kind: "set-cloud-init", cloudInit: undefined }),
  );
}
