// The VM's graphical display: a PNG of what it shows now.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { takeScreenshot } from "../../vm/console/screenshot.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { binary, content, problems } from "../response-schemas.js";
import { vmParams } from "../schemas.js";

export function registerDisplayRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/vms/:name/screenshot",
    {
      schema: {
        operationId: "takeScreenshot",
        summary: "what the VM's display shows now, as PNG (qemu screendump)",
        params: vmParams,
        response: {
          200: content("the display", { "image/png": binary() }),
          ...problems(...errors.screenshot),
        },
      },
    },
    async (req, reply) => {
      const png = await takeScreenshot(registry.get(req.params.name));
      return reply.type("image/png").header("cache-control", "no-store").send(png);
    },
  );
}
