// /v1/vms/{name}/cloud-init: the VM's NoCloud seed content. A change is recorded
// in the definition and takes effect at the VM's next start, when the seed is
// made again (cloud-init reads it at boot only).
import type { FastifyInstance } from "fastify";
import { cloudInitSchema } from "../../vm/definition.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { emptyBody, vmParams } from "../schemas.js";
import { parseInput } from "../validation.js";

export function registerCloudInitRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.put("/v1/vms/:name/cloud-init", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const cloudInit = parseInput(cloudInitSchema, req.body ?? {}, "body");
    return registry.perform(name, { kind: "set-cloud-init", cloudInit });
  });

  app.delete("/v1/vms/:name/cloud-init", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    parseInput(emptyBody, req.body ?? {}, "body");
    return registry.perform(name, { kind: "set-cloud-init", cloudInit: undefined });
  });
}
