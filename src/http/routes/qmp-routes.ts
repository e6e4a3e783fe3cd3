// POST /v1/vms/{name}/qmp: one QMP command from an operator, run on the daemon's
// own connection to the VM's qemu. Which commands run, and under which lock, is
// the VM side's business (src/vm/qmp-passthrough.ts); this route only parses.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { named, problems, qmpReturnSchema } from "../response-schemas.js";
import { vmParams } from "../schemas.js";

export const qmpPassthroughBody = named(
  z
    .object({
      execute: z
        .string()
        .regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, "must be a QMP command name")
        .refine((c) => c !== "qmp_capabilities", "capabilities are already negotiated"),
      arguments: z.record(z.string(), z.unknown()).optional(),
    })
    .strict(),
  "QmpCommand",
);

export function registerQmpRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.withTypeProvider<ZodTypeProvider>().post(
    "/v1/vms/:name/qmp",
    {
      schema: {
        operationId: "runQmpCommand",
        summary: "run one QMP command on the running VM's qemu, logged and evented (secrets redacted)",
        description:
          "Only the allowlist's queries and guest-only actions unless --qmp-passthrough=all (403 otherwise); actions take the operation lock.",
        params: vmParams,
        body: qmpPassthroughBody,
        response: { 200: qmpReturnSchema, ...problems(...errors.qmpPassthrough) },
      },
    },
    async (req) => {
      const { execute, arguments: args } = req.body;
      const result = await registry.perform(req.params.name, { kind: "qmp", command: execute, ...(args ? { arguments: args } : {}) }, req.log);
      return { return: result ?? {} };
    },
  );
}
