// What the API answers: the shapes of its JSON responses and of its problem
// documents, declared once and used by each route's `schema.response`, from
// which the OpenAPI document is made. They describe; they do not filter: the
// serializer sends what a route returns as it is, so a field the document has
// not caught up with still reaches the client, and the document says that an
// answer's objects may carry more fields than it lists (openapi.ts). The types
// of these schemas check, at compile time, that each route returns what it says.
import { z } from "zod";
import { errorCatalogue } from "../errors.js";
import { lastExitSchema } from "../store/runtime-store.js";
import { cloudInitSchema, vmDefinitionSchema } from "../definition/vm-definition.js";
import { vmLimitsSchema } from "../limits/limits-schema.js";
import { vmStates } from "../vm/vm-state.js";

/** Names a schema in the document (components.schemas), keeping what it already says about itself. */
export function named<S extends z.ZodType>(schema: S, id: string): S {
  z.globalRegistry.add(schema, { ...z.globalRegistry.get(schema), id });
  return schema;
}

export const problemSchema = named(
  z
    .looseObject({
      type: z.string().describe("urn:vmhostd:problem:<code>"),
      title: z.string(),
      status: z.number().int(),
      code: z.enum(errorCatalogue.map((e) => e.code) as [string, ...string[]]).describe("stable; see the README's error codes"),
      detail: z.string(),
      field: z.string().optional().describe("the request field at fault, as a dotted path"),
      issues: z.array(z.object({ field: z.string(), message: z.string() })).optional().describe("every invalid field (VMH_ERR_VALIDATION)"),
    })
    .describe("an RFC 9457 problem document; fields beyond these name what it is about (vm, state, job, ...)"),
  "Problem",
);

export const jobSchema = named(
  z.object({
    id: z.uuid(),
    kind: z.string().describe("migrate, backup, evacuate"),
    vm: z.string().describe("the VM; empty for a job of the host (evacuate)"),
    state: z.enum(["running", "succeeded", "failed", "cancelled"]),
    phase: z.string(),
    progress: z.record(z.string(), z.unknown()).describe("figures by name: numbers, strings or null"),
    startedAt: z.string(),
    endedAt: z.string().optional(),
    result: z.record(z.string(), z.unknown()).optional(),
    error: z.object({ code: z.string(), detail: z.string() }).optional(),
    items: z
      .array(z.record(z.string(), z.unknown()))
      .optional()
      .describe("an evacuation: one per VM (vm, state pending/migrating/done/failed/skipped, destination, reason, job)"),
  }),
  "Job",
);

export const vmSchema = named(
  z.object({
    name: z.string(),
    uuid: z.string(),
    state: z.enum(vmStates),
    pid: z.number().int().optional(),
    qemuStatus: z.string().optional().describe("qemu's own run state"),
    unresponsive: z.boolean().optional().describe("qemu did not answer its last command in time"),
    startedAt: z.string().optional(),
    qemuVersion: z.string().optional().describe("of the binary this qemu was started from"),
    argv: z.array(z.string()).optional().describe("the exact command line"),
    qmpDebugSocket: z.string().optional().describe("the second QMP monitor, for qemu's own tools"),
    qemuUid: z.number().int().optional(),
    operation: z
      .object({
        name: z.string(),
        startedAt: z.string(),
        stage: z.literal("migrating-out").optional(),
        reason: z.literal("outcome-unknown").optional().describe("a migration out whose outcome is unknown: the guest is held paused here"),
        since: z.string().optional(),
        destination: z.string().optional(),
        migration: z.string().optional(),
      })
      .optional()
      .describe("the operation in progress"),
    job: jobSchema.optional(),
    lastExit: lastExitSchema.optional().describe("how the last run ended"),
    removalPending: z.array(z.string()).optional().describe("devices the guest was asked to release and has not yet"),
    balloon: z.object({ actualMiB: z.number().int() }).optional(),
    limits: vmLimitsSchema
      .optional()
      .describe("while qemu runs: the limits it holds, read back from its cgroup, qemu's throttle group and tc on its taps (GET /v1/vms/{name})"),
    error: z.string().optional().describe("why the VM is in state error"),
    stateWriteError: z.string().optional(),
    owner: z.object({ host: z.string(), revision: z.string(), since: z.string(), ha: z.boolean() }).optional().describe("fleet mode: the host holding the VM's owner key"),
    definition: named(
      vmDefinitionSchema.extend({
        cloudInit: cloudInitSchema
          .partial({ userData: true })
          .optional()
          .describe("the cloud-init seed; its userData only with ?include=cloud-init on GET /v1/vms and GET /v1/vms/{name}"),
      }),
      "VmDefinition",
    ),
  }),
  "Vm",
);

export const vmListSchema = z.object({ vms: z.array(vmSchema) });
export const jobListSchema = z.object({ jobs: z.array(jobSchema) });

export const acceptedSchema = z
  .object({ vm: z.string(), operation: z.string(), status: z.literal("accepted"), watch: z.string() })
  .describe("the operation goes on; watch the VM (wait=false)");

export const cdromSchema = named(
  z.object({
    drive: z.boolean().describe("the VM has a CD-ROM drive"),
    image: z.string().nullable().describe("the ISO in the definition: in the drive from the next start"),
    live: z
      .object({ medium: z.string().nullable(), trayOpen: z.boolean(), locked: z.boolean() })
      .optional()
      .describe("the drive in the running qemu"),
  }),
  "Cdrom",
);

export const poolListSchema = z.object({
  pools: z.array(
    z.object({ name: z.string(), dir: z.string(), freeBytes: z.number().int().nullable(), totalBytes: z.number().int().nullable() }),
  ),
});

export const hostSchema = z
  .record(z.string(), z.unknown())
  .describe("CPUs, memory, pools with free space, qemu's version, the accelerator, VM counts");

export const balloonSchema = z.object({ targetMiB: z.number().int(), actualMiB: z.number().int().optional() });

export const agentSchema = z.object({
  connected: z.boolean(),
  interfaces: z.array(z.object({ name: z.string(), mac: z.string().optional(), addresses: z.array(z.string()) })).optional(),
  addresses: z.array(z.string()).optional().describe("every address but loopback's, as address/prefix"),
});

export const qmpReturnSchema = z.object({ return: z.unknown().describe("qemu's return value") });

export const incomingReplySchema = z.object({
  uri: z.string().describe("where the source sends RAM: qemu's tcp:HOST:PORT"),
  nbd: z.object({ host: z.string(), port: z.number().int(), exports: z.record(z.string(), z.string()) }).optional(),
  migration: z.string().optional().describe("the migration's id: GET /v1/migrations/{id} answers its outcome"),
});

export const outcomeRecordResponseSchema = z
  .object({
    id: z.string(),
    vm: z.string(),
    uuid: z.string(),
    outcome: z.enum(["prepared", "committed", "aborted"]),
    at: z.string(),
    acknowledgedAt: z.string().optional(),
  })
  .describe("the destination's durable record of a migration: prepared, committed (the guest runs here) or aborted");

export const incomingStateSchema = z.object({
  name: z.string(),
  state: z.enum(["preparing", "receiving", "running", "aborted", "unknown"]),
});

export const fleetHostsSchema = z.object({ hosts: z.array(z.record(z.string(), z.unknown())) });

/** A body-less answer (204, 101). */
export const noContent = (description: string) => z.undefined().describe(description);

/** An answer that is not JSON: the PNG, the console log, the metrics, the event stream. */
export function content(description: string, types: Record<string, z.ZodType>) {
  return { description, content: Object.fromEntries(Object.entries(types).map(([t, schema]) => [t, { schema }])) };
}

/** A JSON answer described in words, its schema kept by reference. */
export const json = (description: string, schema: z.ZodType) => content(description, { "application/json": schema });

export const binary = () => z.string().meta({ format: "binary" });

type ErrorClass = (typeof errorCatalogue)[number];

/**
 * The problem answers of one route, one per status: a Problem whose `code` is one
 * of the codes that status can carry there, the codes listed in the description.
 */
export function problems(...errors: ErrorClass[]) {
  const byStatus = new Map<number, ErrorClass[]>();
  for (const e of errors) {
    const list = byStatus.get(e.status) ?? [];
    if (!list.some((x) => x.code === e.code)) list.push(e);
    byStatus.set(e.status, list);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => {
      const codes = list.map((e) => e.code) as [string, ...string[]];
      const schema = z.intersection(problemSchema, z.object({ code: z.enum(codes) }));
      return [status, content(list.map((e) => `${e.code}: ${e.title}`).join("; "), { "application/problem+json": schema })];
    }),
  );
}
