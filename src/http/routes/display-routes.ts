// The VM's graphical display: a PNG of what it shows now.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { takeScreenshot } from "../../vm/console/screenshot.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { binary, content, problems } from "../response-schemas.js";
import { vmParams } from "../schemas.js";

const screenshotQuery = z
  .object({
    width: z.coerce.number().int().min(16).max(4096).optional().describe("thumbnail: at most this many pixels wide, the aspect kept"),
  })
  .strict();

export function registerDisplayRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/vms/:name/screenshot",
    {
      schema: {
        operationId: "takeScreenshot",
        summary: "what the VM's display shows now, as PNG (qemu screendump); ?width= for a thumbnail",
        description: "With width, the picture is scaled down to at most that many pixels wide, its height in proportion (never scaled up).",
        params: vmParams,
        querystring: screenshotQuery,
        response: {
          200: content("the display", { "image/png": binary() }),
          ...problems(...errors.screenshot),
        },
      },
    },
    async (req, reply) => {
      const png = await takeScreenshot(registry.get(req.params.name), req.query.width);
      return reply.type("image/png").header("cache-control", "no-store").send(png);
    },
  );
}
