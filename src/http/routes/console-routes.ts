// The serial console log as text from a byte offset, so a client can tail it: it
// asks again from where the previous answer ended (X-Console-Next-Offset). Offsets
// count from the log's first byte ever, across rotations; the headers say where
// the kept log begins and whether the asked offset was rotated away.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { content, problems } from "../response-schemas.js";
import { consoleLogQuery, vmParams } from "../schemas.js";

/** A response header (zod has no say in headers: @fastify/swagger takes their JSON Schema as it is). */
const position = (description: string) => ({ type: "integer", minimum: 0, description });

export function registerConsoleRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/vms/:name/console/log",
    {
      schema: {
        operationId: "readConsoleLog",
        summary: "serial console output from byte `offset` of the whole log, at most `limit` bytes per answer",
        description:
          "The log keeps its newest --console-log-max bytes, so an offset rotated away reads from X-Console-Log-Start.",
        params: vmParams,
        querystring: consoleLogQuery,
        response: {
          200: {
            ...content("the log's bytes from X-Console-Offset", { "text/plain": z.string() }),
            headers: {
              "X-Console-Offset": position("position of the first byte of this answer"),
              "X-Console-Next-Offset": position("where the next read continues"),
              "X-Console-Log-Start": position("position of the first byte still kept; earlier bytes were rotated away"),
              "X-Console-Skipped": position("bytes between `offset` and X-Console-Offset that were rotated away"),
              "X-Console-Size": position("end of the log: every byte the guest wrote so far"),
            },
          },
          ...problems(...errors.onVm),
        },
      },
    },
    async (req, reply) => {
      const { offset, limit } = req.query;
      const slice = await registry.get(req.params.name).logs.console.read(offset, limit);
      return reply
        .type("text/plain; charset=utf-8")
        .header("x-console-size", String(slice.end))
        .header("x-console-log-start", String(slice.start))
        .header("x-console-offset", String(slice.from))
        .header("x-console-skipped", String(slice.skipped))
        .header("x-console-next-offset", String(slice.next))
        .send(slice.data);
    },
  );
}
