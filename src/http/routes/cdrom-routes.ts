// /v1/vms/{name}/cdrom: what the VM's CD-ROM drive holds, and changing or
// ejecting its disc. Each change is one VmAction; the answer is the drive as it
// is afterwards, read from qemu when the VM runs.
import type { FastifyInstance } from "fastify";
import { cdromStatus } from "../../vm/cdrom-drive.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { cdromChangeBody, emptyBody, vmParams } from "../schemas.js";
import { parseInput } from "../validation.js";

export function registerCdromRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.get("/v1/vms/:name/cdrom", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    return cdromStatus(registry.get(name));
  });

  app.post("/v1/vms/:name/cdrom", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const { image } = parseInput(cdromChangeBody, req.body ?? {}, "body");
    await registry.perform(name, { kind: "change-cdrom", image });
    return cdromStatus(registry.get(name));
  });

  app.delete("/v1/vms/:name/cdrom", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    parseInput(emptyBody, req.body ?? {}, "body");
    await registry.perform(name, { kind: "eject-cdrom" });
    return cdromStatus(registry.get(name));
  });
}
