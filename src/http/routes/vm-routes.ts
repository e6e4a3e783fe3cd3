// /v1/vms: each route parses and checks its input, turns it into one VmAction or
// registry call, and renders the result. No VM logic lives here.
import type { FastifyInstance } from "fastify";
import { vmCreateSchema } from "../../vm/definition.js";
import type { VmAction, VmRegistry } from "../../vm/vm-registry.js";
import { parseInput } from "../validation.js";
import { emptyBody, shutdownBody, vmActionParams, vmParams, waitQuery } from "../schemas.js";

export function registerVmRoutes(app: FastifyInstance, registry: VmRegistry): void {
  app.get("/v1/vms", async () => {
    return { vms: registry.list().map((vm) => vm.view()) };
  });

  app.post("/v1/vms", async (req, reply) => {
    const body = parseInput(vmCreateSchema, req.body ?? {}, "body");
    const vm = await registry.create(body);
    return reply.status(201).header("location", `/v1/vms/${vm.name}`).send(vm.view());
  });

  app.get("/v1/vms/:name", async (req) => {
    const { name } = parseInput(vmParams, req.params, "params");
    const vm = registry.get(name);
    await vm.refresh();
    // Fleet mode: a VM owned by another host shows that host.
    const owner = await registry.ownerOf(vm);
    const view = vm.view();
    return owner ? { ...view, owner } : view;
  });

  app.delete("/v1/vms/:name", async (req, reply) => {
    const { name } = parseInput(vmParams, req.params, "params");
    parseInput(emptyBody, req.body ?? {}, "body");
    await registry.delete(name);
    return reply.status(204).send();
  });

  app.post("/v1/vms/:name/:action", async (req, reply) => {
    const { name, action } = parseInput(vmActionParams, req.params, "params");
    const { wait } = parseInput(waitQuery, req.query, "query");
    const body = req.body ?? {};
    let vmAction: VmAction;
    if (action === "shutdown") {
      vmAction = { kind: "shutdown", ...parseInput(shutdownBody, body, "body") };
    } else {
      parseInput(emptyBody, body, "body");
      vmAction = { kind: action };
    }
    registry.get(name);
    const done = registry.perform(name, vmAction);
    if (wait === "true") return done;
    // The operation goes on; its failure still reaches the log and the event stream.
    done.catch((err) => req.log.warn({ err, vm: name, action }, "background operation failed"));
    // A refusal (busy, wrong state) comes within a tick and is still answered as an error.
    await Promise.race([done, new Promise((r) => setImmediate(r))]);
    return reply
      .status(202)
      .header("location", `/v1/vms/${name}`)
      .send({ vm: name, operation: action, status: "accepted", watch: `/v1/vms/${name}` });
  });
}
