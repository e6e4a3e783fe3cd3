// POST /v1/vms/{name}/qmp: one QMP command from an operator, run on the daemon's
// own connection to the VM's qemu. It is the escape hatch for a VM stuck behind
// a hung operation, so it takes no operation lock; it is logged and evented so
// that whoever reads the log or the event stream knows who changed what.
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { VmStateConflict } from "../../errors.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
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

/** Reading commands: anything else may change what the daemon believes, and is logged as a warning. */
const readOnly = /^(query-|x-query-)/;

const PASSTHROUGH_TIMEOUT_MS = 30_000;

export function registerQmpRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.post("/v1/vms/:name/qmp", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const body = parseInput(qmpPassthroughBody, req.body ?? {}, "body");
    const vm = registry.get(name);
    const session = vm.session;
    if (!session?.connected) {
      throw new VmStateConflict(name, vm.state(), `send ${body.execute} to`);
    }
    const entry = { vm: name, command: body.execute, arguments: body.arguments };
    if (readOnly.test(body.execute)) req.log.info(entry, "qmp pass-through");
    else req.log.warn(entry, "qmp pass-through may change the VM behind the daemon's back");
    registry.host.bus.publish("qmp.passthrough", name, { command: body.execute, ...(body.arguments ? { arguments: body.arguments } : {}) });
    const result = await session.executeUntyped(body.execute, body.arguments, PASSTHROUGH_TIMEOUT_MS);
    return { return: result ?? {} };
  });
}
