// Fleet mode: the hosts registered in etcd, and the operator's takeover of a VM
// whose owning host is down. Without --etcd these answer 409 (not in fleet mode).
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { NotInFleetMode } from "../../errors.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { parseInput } from "../validation.js";
import { vmParams } from "../schemas.js";

/** `force: true` is the operator's statement that the owning host is down: nothing else is accepted. */
export const takeoverBody = z
  .object({ force: z.literal(true, { message: "must be true: confirm that the owning host is down" }) })
  .strict();

export function registerFleetRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.get("/v1/fleet/hosts", async () => {
    const fleet = registry.host.fleet;
    if (!fleet) throw new NotInFleetMode();
    return { hosts: await fleet.hosts() };
  });

  app.post("/v1/vms/:name/takeover", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    parseInput(takeoverBody, req.body ?? {}, "body");
    return await registry.takeover(name);
  });
}
