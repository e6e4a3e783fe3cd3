// The VM's graphical display: a PNG of what it shows now.
import type { FastifyInstance } from "fastify";
import { takeScreenshot } from "../../vm/screenshot.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { vmParams } from "../schemas.js";
import { parseInput } from "../validation.js";

export function registerDisplayRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.get("/v1/vms/:name/screenshot", async (req, reply) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const png = await takeScreenshot(registry.get(name));
    return reply.type("image/png").header("cache-control", "no-store").send(png);
  });
}
