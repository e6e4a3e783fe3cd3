// /v1/vms/{name}/disks, /nics, /balloon and /agent: adding and removing disks and
// NICs (hot-plugged into a running VM, or only in the definition of a stopped
// one), the memory balloon's target, and the guest agent. Each change is one
// VmAction; the answer is the VM as it is afterwards.
import type { FastifyInstance } from "fastify";
import { queryGuestAgent } from "../../vm/guest-agent.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import { emptyBody, vmParams } from "../schemas.js";
import { balloonBody, deviceRemoveQuery, diskAddBody, diskRefParams, nicAddBody, nicRefParams } from "../device-schemas.js";
import { parseInput } from "../validation.js";

export function registerDeviceRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.post("/v1/vms/:name/disks", async (req, reply) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const disk = parseInput(diskAddBody, req.body ?? {}, "body");
    const vm = await registry.perform(name, { kind: "add-disk", disk });
    return reply.status(201).header("location", `/v1/vms/${name}`).send(vm);
  });

  app.delete("/v1/vms/:name/disks/:disk", async (req) => {
    const { name, disk } = parseInput(diskRefParams, req.params, "params");
    const { timeoutSec } = parseInput(deviceRemoveQuery, req.query, "query");
    parseInput(emptyBody, req.body ?? {}, "body");
    return registry.perform(name, { kind: "remove-disk", disk, ...(timeoutSec ? { timeoutSec } : {}) });
  });

  app.post("/v1/vms/:name/nics", async (req, reply) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const nic = parseInput(nicAddBody, req.body ?? {}, "body");
    const vm = await registry.perform(name, { kind: "add-nic", nic });
    return reply.status(201).header("location", `/v1/vms/${name}`).send(vm);
  });

  app.delete("/v1/vms/:name/nics/:nic", async (req) => {
    const { name, nic } = parseInput(nicRefParams, req.params, "params");
    const { timeoutSec } = parseInput(deviceRemoveQuery, req.query, "query");
    parseInput(emptyBody, req.body ?? {}, "body");
    return registry.perform(name, { kind: "remove-nic", nic: nic.toLowerCase(), ...(timeoutSec ? { timeoutSec } : {}) });
  });

  app.post("/v1/vms/:name/balloon", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const { targetMiB } = parseInput(balloonBody, req.body ?? {}, "body");
    await registry.perform(name, { kind: "set-balloon", targetMiB });
    const vm = registry.get(name);
    return { targetMiB, ...(vm.balloonActual !== undefined ? { actualMiB: Math.round(vm.balloonActual / 2 ** 20) } : {}) };
  });

  app.get("/v1/vms/:name/agent", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    return queryGuestAgent(registry.get(name));
  });
}

