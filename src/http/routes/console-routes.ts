// The serial console log as text from a byte offset, so a client can tail it:
// it asks again from the offset the previous answer ended at (X-Console-Next-Offset).
import type { FastifyInstance } from "fastify";
import { open } from "node:fs/promises";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { consoleLogQuery, vmParams } from "../schemas.js";
import { parseInput } from "../validation.js";

export function registerConsoleRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.get("/v1/vms/:name/console/log", async (req, reply) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const { offset, limit } = parseInput(consoleLogQuery, req.query, "query");
    const vm = registry.get(name);
    const { data, size } = await readFrom(vm.paths.consoleLog, offset, limit);
    return reply
      .type("text/plain; charset=utf-8")
      .header("x-console-size", String(size))
      .header("x-console-next-offset", String(offset + data.length))
      .send(data);
  });
}

async function readFrom(file: string, offset: number, limit: number): Promise<{ data: Buffer; size: number }> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { data: Buffer.alloc(0), size: 0 };
    throw err;
  }
  try {
    const { size } = await fh.stat();
    if (offset >= size) return { data: Buffer.alloc(0), size };
    const len = Math.min(limit, size - offset);
    const buf = Buffer.alloc(len);
    const { bytesRead } = await fh.read(buf, 0, len, offset);
    return { data: buf.subarray(0, bytesRead), size };
  } finally {
    await fh.close();
  }
}
