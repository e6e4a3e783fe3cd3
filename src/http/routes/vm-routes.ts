// /v1/vms: each route declares its input and answers (the API document is made
// from them), turns the request into one VmAction or registry call, and renders
// the result. No VM logic lives here.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { z } from "zod";
import { RouteNotFound } from "../../errors.js";
import { vmCreateSchema } from "../../definition/vm-definition.js";
import type { ViewAction, VmRegistry } from "../../vm/vm-registry.js";
import type { Vm, VmView } from "../../vm/vm.js";
import * as errors from "../route-errors.js";
import { acceptedSchema, json, named, noContent, problems, vmListSchema, vmSchema } from "../response-schemas.js";
import { emptyBody, shutdownBody, vmActionParams, vmParams, vmViewQuery, waitQuery } from "../schemas.js";

type Lifecycle = z.output<typeof vmActionParams>["action"];

const lifecycle: Record<Lifecycle, string> = {
  start: "start the VM; answers once qemu reports it running",
  shutdown: "ACPI power button; waits for the guest to power off, hard stop after timeoutSec (default 60)",
  stop: "hard stop (QMP quit, then SIGTERM, then SIGKILL of that very process)",
  reset: "hard reset",
  pause: "stop the vCPUs",
  resume: "continue the vCPUs",
};

export function registerVmRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get(
    "/v1/vms",
    {
      schema: {
        operationId: "listVms",
        summary: "every VM with its state",
        querystring: vmViewQuery,
        response: { 200: vmListSchema, ...problems(...errors.anyRequest) },
      },
    },
    async (req) => ({ vms: registry.list().map((vm) => withUserData(vm.view(), vm, req.query.include)) }),
  );

  r.post(
    "/v1/vms",
    {
      schema: {
        operationId: "createVm",
        summary: "define a VM (Location: the new VM)",
        body: named(vmCreateSchema, "VmCreate"),
        response: { 201: vmSchema, ...problems(...errors.create) },
      },
    },
    async (req, reply) => {
      const vm = await registry.perform(req.body.name, { kind: "create", definition: req.body });
      return reply.status(201).header("location", `/v1/vms/${vm.name}`).send(vm);
    },
  );

  r.get(
    "/v1/vms/:name",
    {
      schema: {
        operationId: "getVm",
        summary: "one VM; its state is read from qemu first; in fleet mode its owner",
        params: vmParams,
        querystring: vmViewQuery,
        response: { 200: vmSchema, ...problems(...errors.onVm) },
      },
    },
    async (req) => {
      const vm = registry.get(req.params.name);
      await vm.refresh();
      // Fleet mode: a VM owned by another host shows that host.
      const owner = await registry.ownerOf(vm);
      const view = withUserData(vm.view(), vm, req.query.include);
      return owner ? { ...view, owner } : view;
    },
  );

  r.delete(
    "/v1/vms/:name",
    {
      schema: {
        operationId: "deleteVm",
        summary: "delete a stopped VM and the disks it created; images it only used stay",
        params: vmParams,
        body: emptyBody,
        response: { 204: noContent("deleted"), ...problems(...errors.vmChange) },
      },
    },
    async (req, reply) => {
      await registry.perform(req.params.name, { kind: "delete" });
      return reply.status(204).send();
    },
  );

  for (const action of Object.keys(lifecycle) as Lifecycle[]) {
    r.post(
      `/v1/vms/:name/${action}`,
      {
        schema: {
          operationId: `${action}Vm`,
          summary: lifecycle[action],
          params: vmParams,
          querystring: waitQuery,
          body: action === "shutdown" ? shutdownBody : emptyBody,
          response: {
            200: json("the VM once the operation reached its state", vmSchema),
            202: acceptedSchema,
            ...problems(...(action === "start" || action === "reset" ? errors.vmStart : [...errors.vmChange, ...errors.qemuCommand])),
          },
        },
      },
      async (req, reply) => {
        const { name } = req.params;
        const vmAction: ViewAction = action === "shutdown" ? { kind: "shutdown", ...req.body } : { kind: action };
        registry.get(name);
        const done = registry.perform(name, vmAction);
        if (req.query.wait === "true") return done;
        // The operation goes on; its failure still reaches the log and the event stream.
        done.catch((err) => req.log.warn({ err, vm: name, action }, "background operation failed"));
        // A refusal (busy, wrong state) comes within a tick and is still answered as an error.
        await Promise.race([done, new Promise((resolve) => setImmediate(resolve))]);
        return reply
          .status(202)
          .header("location", `/v1/vms/${name}`)
          .send({ vm: name, operation: action, status: "accepted" as const, watch: `/v1/vms/${name}` });
      },
    );
  }

  // Any other word after a VM's name: its params schema refuses it (400 naming `action`),
  // as a lifecycle call with a misspelt action deserves, rather than "no such endpoint".
  r.post(
    "/v1/vms/:name/:action",
    { schema: { hide: true, params: vmActionParams } },
    async (req) => {
      throw new RouteNotFound(`no endpoint POST /v1/vms/${req.params.name}/${req.params.action}`);
    },
  );
}

/** The view, with the definition's cloud-init user-data when the client asked for it. */
function withUserData(view: VmView, vm: Vm, include: "cloud-init" | undefined): VmView {
  return include === "cloud-init" ? { ...view, definition: vm.definition } : view;
}
