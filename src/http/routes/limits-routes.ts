// /v1/vms/{name}/limits: change a VM's limits with a merge patch. A running VM
// holds them at once; the answer is the VM with `limits` as read back from its
// cgroup, qemu and its taps.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { limitsPatchSchema } from "../../limits/limits-schema.js";
import { LimitsFailed } from "../../errors.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { json, named, problems, vmSchema } from "../response-schemas.js";
import { vmParams } from "../schemas.js";

export function registerLimitsRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.patch(
    "/v1/vms/:name/limits",
    {
      schema: {
        operationId: "setVmLimits",
        summary: "change the VM's limits (a merge patch: null removes); a running VM holds them at once",
        params: vmParams,
        body: named(limitsPatchSchema, "LimitsPatch"),
        response: { 200: json("the VM, its limits read back", vmSchema), ...problems(...errors.vmChange, ...errors.qemuCommand, LimitsFailed) },
      },
    },
    async (req) => {
      await registry.perform(req.params.name, { kind: "set-limits", patch: req.body });
      const vm = registry.get(req.params.name);
      await vm.refresh();
      return vm.view();
    },
  );
}
