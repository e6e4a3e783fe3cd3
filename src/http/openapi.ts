// The OpenAPI document, generated from the same zod schemas the routes validate
// with, so the document cannot drift from what the daemon accepts.
import { z } from "zod";
import { errorCatalogue } from "../errors.js";
import { DAEMON_VERSION } from "../host/host-inventory.js";
import { vmCreateSchema, vmDefinitionSchema } from "../vm/definition.js";
import { vmStates } from "../vm/vm-state.js";
import { consoleLogQuery, shutdownBody } from "./schemas.js";

const schema = (s: z.ZodType, io: "input" | "output" = "input") =>
  z.toJSONSchema(s, { io, unrepresentable: "any", target: "openapi-3.0" });

const problem = { $ref: "#/components/schemas/Problem" };
const problems = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((c) => [String(c), { description: "problem", content: { "application/problem+json": { schema: problem } } }]),
  );
const json = (ref: string) => ({ "application/json": { schema: { $ref: `#/components/schemas/${ref}` } } });
const nameParam = { name: "name", in: "path", required: true, schema: { type: "string", pattern: "^[a-z0-9][a-z0-9-]{0,62}$" } };
const waitParam = { name: "wait", in: "query", required: false, schema: { type: "string", enum: ["true", "false"] } };

function action(summary: string, body?: string) {
  return {
    post: {
      summary,
      parameters: [nameParam, waitParam],
      ...(body ? { requestBody: { required: false, content: json(body) } } : {}),
      responses: {
        "200": { description: "the VM once the operation reached its state", content: json("Vm") },
        "202": { description: "accepted (wait=false); watch the VM" },
        ...problems(400, 404, 409, 502, 504),
      },
    },
  };
}

export function buildOpenApi(): Record<string, unknown> {
  return {
    openapi: "3.0.3",
    info: { title: "vmhostd", version: DAEMON_VERSION, description: "Per-host VM daemon API" },
    paths: {
      "/healthz": { get: { summary: "liveness", responses: { "200": { description: "ok" } } } },
      "/v1/host": { get: { summary: "host inventory", responses: { "200": { description: "the host" } } } },
      "/v1/vms": {
        get: { summary: "list VMs", responses: { "200": { description: "{vms: Vm[]}" } } },
        post: {
          summary: "define a VM",
          requestBody: { required: true, content: json("VmCreate") },
          responses: { "201": { description: "created", content: json("Vm") }, ...problems(400, 409) },
        },
      },
      "/v1/vms/{name}": {
        get: { summary: "one VM, state read from qemu", parameters: [nameParam], responses: { "200": { description: "the VM", content: json("Vm") }, ...problems(400, 404) } },
        delete: { summary: "delete a stopped VM and its own disks", parameters: [nameParam], responses: { "204": { description: "deleted" }, ...problems(400, 404, 409) } },
      },
      "/v1/vms/{name}/start": action("start the VM; answers once it runs"),
      "/v1/vms/{name}/shutdown": action("ACPI power-off, hard stop after timeoutSec", "ShutdownRequest"),
      "/v1/vms/{name}/stop": action("hard stop"),
      "/v1/vms/{name}/reset": action("hard reset"),
      "/v1/vms/{name}/pause": action("pause the vCPUs"),
      "/v1/vms/{name}/resume": action("resume the vCPUs"),
      "/v1/vms/{name}/console/log": {
        get: {
          summary: "serial console output from byte `offset`; X-Console-Next-Offset says where to continue",
          parameters: [nameParam, ...queryParams(consoleLogQuery)],
          responses: { "200": { description: "text/plain" }, ...problems(400, 404) },
        },
      },
      "/openapi.json": { get: { summary: "this document", responses: { "200": { description: "OpenAPI 3" } } } },
    },
    components: {
      schemas: {
        VmCreate: schema(vmCreateSchema),
        VmDefinition: schema(vmDefinitionSchema, "output"),
        Vm: {
          type: "object",
          required: ["name", "uuid", "state", "definition"],
          properties: {
            name: { type: "string" },
            uuid: { type: "string" },
            state: { type: "string", enum: [...vmStates] },
            unresponsive: { type: "boolean", description: "qemu did not answer its last command in time" },
            error: { type: "string", description: "why the VM is in state error" },
            pid: { type: "integer" },
            argv: { type: "array", items: { type: "string" } },
            lastExit: { type: "object" },
            definition: { $ref: "#/components/schemas/VmDefinition" },
          },
        },
        ShutdownRequest: schema(shutdownBody),
        Problem: {
          type: "object",
          required: ["type", "title", "status", "code", "detail"],
          properties: {
            type: { type: "string" },
            title: { type: "string" },
            status: { type: "integer" },
            code: { type: "string", enum: errorCatalogue.map((e) => e.code) },
            detail: { type: "string" },
            field: { type: "string", description: "the request field at fault, as a dotted path" },
          },
        },
      },
    },
  };
}

function queryParams(s: z.ZodObject) {
  return Object.keys(s.shape).map((name) => ({ name, in: "query", required: false, schema: { type: "integer" } }));
}
