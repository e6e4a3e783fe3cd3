// /v1/vms/{name}/disks, /nics, /balloon and /agent: adding and removing disks and
// NICs (hot-plugged into a running VM, or only in the definition of a stopped
// one), the memory balloon's target, and the guest agent. Each change is one
// VmAction; the answer is the VM as it is afterwards.
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { queryGuestAgent } from "../../vm/guest/guest-agent.js";
import type { VmRegistry } from "../../vm/vm-registry.js";
import * as errors from "../route-errors.js";
import { agentSchema, balloonSchema, json, problems, vmSchema } from "../response-schemas.js";
import { emptyBody, vmParams } from "../schemas.js";
import { balloonBody, deviceRemoveQuery, diskAddBody, diskRefParams, nicAddBody, nicFilterBody, nicRefParams } from "../device-schemas.js";

export function registerDeviceRoutes(app: FastifyInstance, registry: VmRegistry): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.post(
    "/v1/vms/:name/disks",
    {
      schema: {
        operationId: "addDisk",
        summary: "add a disk: hot-plugged on a free PCIe root port when the VM runs, and recorded in the definition",
        params: vmParams,
        body: diskAddBody,
        response: { 201: json("the VM", vmSchema), ...problems(...errors.deviceAdd) },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      const vm = await registry.perform(name, { kind: "add-disk", disk: req.body });
      return reply.status(201).header("location", `/v1/vms/${name}`).send(vm);
    },
  );

  r.delete(
    "/v1/vms/:name/disks/:disk",
    {
      schema: {
        operationId: "removeDisk",
        summary: "remove a disk: the guest releases it, its nodes are freed, the VM's own disk file is deleted",
        description: "Waits timeoutSec (default 30) for the guest; then 504, and the removal stays pending.",
        params: diskRefParams,
        querystring: deviceRemoveQuery,
        body: emptyBody,
        response: { 200: json("the VM", vmSchema), ...problems(...errors.deviceRemove) },
      },
    },
    async (req) => {
      const { name, disk } = req.params;
      const { timeoutSec } = req.query;
      return registry.perform(name, { kind: "remove-disk", disk, ...(timeoutSec ? { timeoutSec } : {}) });
    },
  );

  r.post(
    "/v1/vms/:name/nics",
    {
      schema: {
        operationId: "addNic",
        summary: "add a NIC (user, or bridge with a tap the daemon makes): hot-plugged when the VM runs, and recorded",
        params: vmParams,
        body: nicAddBody,
        response: { 201: json("the VM", vmSchema), ...problems(...errors.deviceAdd) },
      },
    },
    async (req, reply) => {
      const { name } = req.params;
      const vm = await registry.perform(name, { kind: "add-nic", nic: req.body });
      return reply.status(201).header("location", `/v1/vms/${name}`).send(vm);
    },
  );

  r.patch(
    "/v1/vms/:name/nics/:nic",
    {
      schema: {
        operationId: "setNicFilter",
        summary: "change a bridged NIC's addresses or filtering: while the VM runs, its rules are replaced in one nft transaction and read back",
        params: nicRefParams,
        body: nicFilterBody,
        response: { 200: json("the VM", vmSchema), ...problems(...errors.nicFilter) },
      },
    },
    async (req) => {
      const { name, nic } = req.params;
      return registry.perform(name, { kind: "set-nic-filter", nic, ...req.body });
    },
  );

  r.delete(
    "/v1/vms/:name/nics/:nic",
    {
      schema: {
        operationId: "removeNic",
        summary: "remove a NIC by its index or MAC (a running VM: only its last NIC), as disks are removed",
        params: nicRefParams,
        querystring: deviceRemoveQuery,
        body: emptyBody,
        response: { 200: json("the VM", vmSchema), ...problems(...errors.deviceRemove) },
      },
    },
    async (req) => {
      const { name, nic } = req.params;
      const { timeoutSec } = req.query;
      return registry.perform(name, { kind: "remove-nic", nic: nic.toLowerCase(), ...(timeoutSec ? { timeoutSec } : {}) });
    },
  );

  r.post(
    "/v1/vms/:name/balloon",
    {
      schema: {
        operationId: "setBalloon",
        summary: "set the memory balloon's target of a running VM; the guest's driver moves towards it",
        params: vmParams,
        body: balloonBody,
        response: { 200: balloonSchema, ...problems(...errors.vmChange, ...errors.qemuCommand) },
      },
    },
    async (req) => {
      const { name } = req.params;
      const { targetMiB } = req.body;
      await registry.perform(name, { kind: "set-balloon", targetMiB });
      const vm = registry.get(name);
      return { targetMiB, ...(vm.balloonActual !== undefined ? { actualMiB: Math.round(vm.balloonActual / 2 ** 20) } : {}) };
    },
  );

  r.get(
    "/v1/vms/:name/agent",
    {
      schema: {
        operationId: "queryGuestAgent",
        summary: "whether a guest agent answers on the VM's channel, and the guest's addresses",
        description: "{connected: false} promptly without one.",
        params: vmParams,
        response: { 200: agentSchema, ...problems(...errors.onVm) },
      },
    },
    async (req) => queryGuestAgent(registry.get(req.params.name)),
  );
}
