// Fleet mode: the hosts registered in etcd, and the operator's takeover of a VM
// whose owning host is down. Without --etcd these answer 409 (not in fleet mode).
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { NotInFleetMode } from "../../errors.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { fleetHostsSchema, json, problems, vmSchema } from "../response-schemas.js";
import { vmParams } from "../schemas.js";

/** `force: true` is the operator's statement that the owning host is down: nothing else is accepted. */
export const takeoverBody = z
  .object({ force: z.literal(true, { message: "must be true: confirm that the owning host is down" }) })
  .strict();

export function registerFleetRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/fleet/hosts",
    {
      schema: {
        operationId: "listFleetHosts",
        summary: "fleet mode: every live host's registry entry from etcd",
        response: { 200: fleetHostsSchema, ...problems(...errors.fleet) },
      },
    },
    async () => {
      const fleet = registry.host.fleet;
      if (!fleet) throw new NotInFleetMode();
      return { hosts: await fleet.hosts() };
    },
  );

  r.post(
    "/v1/vms/:name/takeover",
    {
      schema: {
        operationId: "takeOverVm",
        summary: "fleet mode: take the VM's owner key for this host once its owner is known to be down",
        params: vmParams,
        body: takeoverBody,
        response: { 200: json("the VM, with its new owner", vmSchema), ...problems(...errors.vmChange, ...errors.fleet) },
      },
    },
    async (req) => registry.perform(req.params.name, { kind: "takeover" }),
  );
}
