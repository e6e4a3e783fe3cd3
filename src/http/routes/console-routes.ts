// The serial console log as text from a byte offset, so a client can tail it: it
// asks again from where the previous answer ended (X-Console-Next-Offset). Offsets
// count from the log's first byte ever, across rotations; the headers say where
// the kept log begins and whether the asked offset was rotated away.
import type { FastifyInstance } from "fastify";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { consoleLogQuery, vmParams } from "../schemas.js";
import { parseInput } from "../validation.js";

export function registerConsoleRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.get("/v1/vms/:name/console/log", async (req, reply) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const { offset, limit } = parseInput(consoleLogQuery, req.query, "query");
    const vm = registry.get(name);
    const slice = await vm.consoleLog.read(offset, limit);
    return reply
      .type("text/plain; charset=utf-8")
      .header("x-console-size", String(slice.end))
      .header("x-console-log-start", String(slice.start))
      .header("x-console-offset", String(slice.from))
      .header("x-console-skipped", String(slice.skipped))
      .header("x-console-next-offset", String(slice.next))
      .send(slice.data);
  });
}
