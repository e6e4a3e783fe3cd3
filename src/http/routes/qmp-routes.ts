// POST /v1/vms/{name}/qmp: one QMP command from an operator, run on the daemon's
// own connection to the VM's qemu. Which commands run, and under which lock, is
// the VM side's business (src/vm/qmp-passthrough.ts); this route only parses.
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { runPassthrough } from "../../vm/qmp-passthrough.js";
import { parseInput } from "../validation.js";
import { vmParams } from "../schemas.js";

export const qmpPassthroughBody = z
  .object({
    execute: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, "must be a QMP command name")
      .refine((c) => c !== "qmp_capabilities", "capabilities are already negotiated"),
    arguments: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

export function registerQmpRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.post("/v1/vms/:name/qmp", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const body = parseInput(qmpPassthroughBody, req.body ?? {}, "body");
    const vm = registry.get(name);
    const result = await runPassthrough(vm, body, registry.host.config.qmpPassthrough, req.log);
    return { return: result ?? {} };
  });
}
