// The OpenAPI document, generated from the same zod schemas the routes validate
// with, so the document cannot drift from what the daemon accepts.
import { z } from "zod";
import { errorCatalogue } from "../errors.js";
import { DAEMON_VERSION } from "../host/host-inventory.js";
import { cloudInitSchema, vmCreateSchema, vmDefinitionSchema } from "../vm/definition.js";
import { vmStates } from "../vm/vm-state.js";
import { cdromChangeBody, consoleLogQuery, shutdownBody } from "./schemas.js";
import { takeoverBody } from "./routes/fleet-routes.js";
import { migrateRequestSchema } from "../migration/migration-schema.js";
import { diskBackupBody, diskResizeBody } from "./storage-schemas.js";
import { balloonBody, diskAddBody, nicAddBody } from "./device-schemas.js";
import { qmpPassthroughBody } from "./routes/qmp-routes.js";

const schema = (s: z.ZodType, io: "input" | "output" = "input") =>
  z.toJSONSchema(s, { io, unrepresentable: "any", target: "openapi-3.0" });

const problem = { $ref: "#/components/schemas/Problem" };
const problems = (...codes: number[]) =>
  Object.fromEntries(
    codes.map((c) => [String(c), { description: "problem", content: { "application/problem+json": { schema: problem } } }]),
  );
const json = (ref: string) => ({ "application/json": { schema: { $ref: `#/components/schemas/${ref}` } } });
const nameParam = { name: "name", in: "path", required: true, schema: { type: "string", pattern: "^[a-z0-9][a-z0-9-]{0,62}$" } };
const timeoutSecParam = { name: "timeoutSec", in: "query", required: false, schema: { type: "integer", minimum: 1, maximum: 600 } };
const diskParam = { name: "disk", in: "path", required: true, schema: { type: "string", pattern: "^[a-z][a-z0-9-]{0,26}$" } };
const jobParam = { name: "id", in: "path", required: true, schema: { type: "string", format: "uuid" } };
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
        ...problems(400, 404, 409, 502, 504, 507),
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
      "/metrics": { get: { summary: "Prometheus metrics (text format 0.0.4)", responses: { "200": { description: "the metrics" } } } },
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
          summary:
            "serial console output from byte `offset` of the whole log, at most `limit` bytes (1 MiB) per answer; " +
            "the log keeps its newest --console-log-max bytes, so an offset rotated away reads from X-Console-Log-Start",
          parameters: [nameParam, ...queryParams(consoleLogQuery)],
          responses: {
            "200": {
              description: "text/plain",
              headers: {
                "X-Console-Offset": intHeader("position of the first byte of this answer"),
                "X-Console-Next-Offset": intHeader("where the next read continues"),
                "X-Console-Log-Start": intHeader("position of the first byte still kept; earlier bytes were rotated away"),
                "X-Console-Skipped": intHeader("bytes between `offset` and X-Console-Offset that were rotated away"),
                "X-Console-Size": intHeader("end of the log: every byte the guest wrote so far"),
              },
            },
            ...problems(400, 404),
          },
        },
      },
      "/v1/vms/{name}/console": {
        get: {
          summary:
            "interactive serial console (WebSocket upgrade): guest output as binary frames, the writer's frames to the guest; " +
            "mode=rw for the one writer, mode=ro (default) to watch. Closed with 4000 when qemu exits, 4001 if its console " +
            "connection is lost, 4002 for a viewer too far behind; 429 beyond --max-console-viewers or the listener's stream caps",
          parameters: [nameParam, { name: "mode", in: "query", required: false, schema: { type: "string", enum: ["ro", "rw"] } }],
          responses: {
            "101": { description: "switching to WebSocket" },
            ...problems(400, 404, 429),
            "409": { description: "VM not running (VMH_ERR_VM_STATE) or the console has a writer (VMH_ERR_CONSOLE_BUSY)", content: { "application/problem+json": { schema: problem } } },
          },
        },
      },
      "/v1/vms/{name}/screenshot": {
        get: {
          summary: "what the VM's display shows now, as PNG (qemu screendump)",
          parameters: [nameParam],
          responses: { "200": { description: "image/png", content: { "image/png": { schema: { type: "string", format: "binary" } } } }, ...problems(400, 404, 409, 502, 504) },
        },
      },
      "/v1/vms/{name}/migrate": {
        post: {
          summary: "live-migrate to another host; answers 202 with the job",
          parameters: [nameParam],
          requestBody: { required: true, content: json("MigrateRequest") },
          responses: { "202": { description: "the migration job", content: json("Job") }, ...problems(400, 404, 409) },
        },
      },
      "/v1/jobs": { get: { summary: "jobs, running and recently finished", responses: { "200": { description: "{jobs: Job[]}" } } } },
      "/v1/jobs/{id}": {
        get: { summary: "one job: phase, progress, result or error", parameters: [jobParam], responses: { "200": { description: "the job", content: json("Job") }, ...problems(404) } },
      },
      "/v1/jobs/{id}/cancel": {
        post: { summary: "cancel a running job", parameters: [jobParam], responses: { "202": { description: "cancelling" }, ...problems(404, 409) } },
      },
      "/v1/incoming": {
        post: { summary: "peer API: prepare to receive a VM (the source daemon calls this)", responses: { "201": { description: "where to send RAM and disks" }, ...problems(400, 401, 409, 507) } },
      },
      "/v1/incoming/{name}": {
        get: { summary: "peer API: receiving, running (committed) or aborted", parameters: [nameParam], responses: { "200": { description: "{name, state}" } } },
        delete: { summary: "peer API: abort an incoming VM that was not committed", parameters: [nameParam], responses: { "204": { description: "removed" }, ...problems(409) } },
      },
      "/v1/incoming/{name}/commit": {
        post: { summary: "peer API: RAM arrived and the source is paused: resume the guest here", parameters: [nameParam], responses: { "200": { description: "the VM", content: json("Vm") }, ...problems(409) } },
      },
      "/v1/vms/{name}/cdrom": {
        get: { summary: "the CD-ROM drive: the definition's ISO and, while qemu runs, its disc and tray", parameters: [nameParam], responses: { "200": { description: "the drive", content: json("Cdrom") }, ...problems(400, 404) } },
        post: {
          summary: "put an ISO into the drive (at once on a running VM) and record it in the definition",
          parameters: [nameParam],
          requestBody: { required: true, content: json("CdromChange") },
          responses: { "200": { description: "the drive afterwards", content: json("Cdrom") }, ...problems(400, 404, 409, 502, 504) },
        },
        delete: { summary: "eject the disc (forced: a guest lock is overridden); the drive stays, empty", parameters: [nameParam], responses: { "200": { description: "the drive afterwards", content: json("Cdrom") }, ...problems(404, 409, 502, 504) } },
      },
      "/v1/pools": {
        get: { summary: "storage pools: name, directory, free and total bytes", responses: { "200": { description: "{pools: Pool[]}", content: json("PoolList") } } },
      },
      "/v1/vms/{name}/disks/{disk}/resize": {
        post: {
          summary: "grow one of the VM's own disks (live through block_resize when it runs) and record the size",
          parameters: [nameParam, diskParam],
          requestBody: { required: true, content: json("DiskResize") },
          responses: { "200": { description: "the VM", content: json("Vm") }, ...problems(400, 404, 409, 502, 504) },
        },
      },
      "/v1/vms/{name}/disks/{disk}/backup": {
        post: {
          summary: "live backup of a running VM's disk to a new image in a pool (blockdev-backup, sync full); answers 202 with the job",
          parameters: [nameParam, diskParam],
          requestBody: { required: true, content: json("DiskBackup") },
          responses: { "202": { description: "the backup job", content: json("Job") }, ...problems(400, 404, 409) },
        },
      },
      "/v1/vms/{name}/disks": {
        post: {
          summary: "add a disk ({name, sizeGiB} or {name, image}): hot-plugged on a free PCIe root port when the VM runs, and recorded in the definition",
          parameters: [nameParam],
          requestBody: { required: true, content: json("DiskAdd") },
          responses: { "201": { description: "the VM", content: json("Vm") }, ...problems(400, 404, 409, 502, 504) },
        },
      },
      "/v1/vms/{name}/disks/{disk}": {
        delete: {
          summary: "remove a disk: device_del, wait for the guest to release it (?timeoutSec, default 30; then 504 and the removal stays pending), free its nodes, record; the VM's own disk file is deleted",
          parameters: [nameParam, diskParam, timeoutSecParam],
          responses: { "200": { description: "the VM", content: json("Vm") }, ...problems(404, 409, 502, 504) },
        },
      },
      "/v1/vms/{name}/nics": {
        post: {
          summary: "add a NIC (user, or bridge with a tap the daemon makes): hot-plugged when the VM runs, and recorded",
          parameters: [nameParam],
          requestBody: { required: true, content: json("NicAdd") },
          responses: { "201": { description: "the VM", content: json("Vm") }, ...problems(400, 404, 409, 500, 502) },
        },
      },
      "/v1/vms/{name}/nics/{nic}": {
        delete: {
          summary: "remove a NIC by its index or MAC (a running VM: only its last NIC); as disks, with a pending state",
          parameters: [nameParam, { name: "nic", in: "path", required: true, schema: { type: "string" } }, timeoutSecParam],
          responses: { "200": { description: "the VM", content: json("Vm") }, ...problems(404, 409, 502, 504) },
        },
      },
      "/v1/vms/{name}/balloon": {
        post: {
          summary: "set the memory balloon's target of a running VM; the guest's driver moves towards it (see the VM's balloon.actualMiB)",
          parameters: [nameParam],
          requestBody: { required: true, content: json("BalloonTarget") },
          responses: { "200": { description: "{targetMiB, actualMiB?}" }, ...problems(400, 404, 409, 502, 504) },
        },
      },
      "/v1/vms/{name}/cloud-init": {
        put: {
          summary: "set the VM's cloud-init NoCloud seed content; the seed is made again at the next start",
          parameters: [nameParam],
          requestBody: { required: true, content: json("CloudInit") },
          responses: { "200": { description: "the VM", content: json("Vm") }, ...problems(400, 404, 409, 507) },
        },
        delete: {
          summary: "remove the VM's cloud-init seed (from the next start)",
          parameters: [nameParam],
          responses: { "200": { description: "the VM", content: json("Vm") }, ...problems(404, 409, 507) },
        },
      },
      "/v1/vms/{name}/qmp": {
        post: {
          summary: "run one QMP command on the running VM's qemu: only the allowlist's queries and guest-only actions unless --qmp-passthrough=all (403 otherwise); actions take the operation lock; logged and evented (secrets redacted) as qmp.passthrough",
          parameters: [nameParam],
          requestBody: { required: true, content: json("QmpCommand") },
          responses: { "200": { description: "{return: qemu's return value}" }, ...problems(400, 403, 404, 409, 422, 502, 504) },
        },
      },
      "/v1/vms/{name}/agent": {
        get: {
          summary: "whether a guest agent answers on the VM's channel (guest-sync, guest-ping), and the guest's addresses; {connected: false} promptly without one",
          parameters: [nameParam],
          responses: { "200": { description: "{connected, addresses?, interfaces?}" }, ...problems(404) },
        },
      },
      "/v1/events": {
        get: {
          summary:
            "the daemon's events as Server-Sent Events (id, event type, data: the event as JSON); resumes after Last-Event-ID or ?since=; events.lost when the ring no longer holds the missed ones; events.dropped, then disconnection, for a client that does not keep up",
          parameters: [
            { name: "vm", in: "query", required: false, schema: nameParam.schema, description: "only this VM's events" },
            { name: "since", in: "query", required: false, schema: { type: "integer", minimum: 0 }, description: "resume after this id" },
            { name: "Last-Event-ID", in: "header", required: false, schema: { type: "integer", minimum: 0 }, description: "resume after this id (wins over since)" },
          ],
          responses: {
            "200": { description: "an endless stream; a comment every 15 s", content: { "text/event-stream": { schema: { $ref: "#/components/schemas/Event" } } } },
            ...problems(400, 429),
          },
        },
      },
      "/v1/fleet/hosts": {
        get: { summary: "fleet mode: every live host's registry entry from etcd", responses: { "200": { description: "{hosts: [...]}" }, ...problems(409, 503) } },
      },
      "/v1/vms/{name}/takeover": {
        post: {
          summary: "fleet mode: take the VM's owner key for this host once its owner is known to be down (logged, evented)",
          parameters: [nameParam],
          requestBody: { required: true, content: { "application/json": { schema: schema(takeoverBody) } } },
          responses: { "200": { description: "the VM, with its new owner", content: json("Vm") }, ...problems(400, 404, 409, 503) },
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
        Event: {
          type: "object",
          description: "the data of one SSE event; events.lost and events.dropped (about the stream itself) have no id",
          required: ["time", "type", "data"],
          properties: {
            id: { type: "integer", description: "increases by one per event the daemon publishes; restarts at 1 with the daemon" },
            time: { type: "string", format: "date-time" },
            type: { type: "string", description: "vm.state, operation.started, operation.ended, job.progress, job.ended, qemu.<EVENT>, daemon.started, ..." },
            vm: { type: "string" },
            data: { type: "object" },
          },
        },
        ShutdownRequest: schema(shutdownBody),
        CdromChange: schema(cdromChangeBody),
        Cdrom: {
          type: "object",
          required: ["drive", "image"],
          properties: {
            drive: { type: "boolean", description: "the VM has a CD-ROM drive" },
            image: { type: "string", nullable: true, description: "the ISO in the definition: in the drive from the next start" },
            live: {
              type: "object",
              description: "the drive in the running qemu",
              properties: { medium: { type: "string", nullable: true }, trayOpen: { type: "boolean" }, locked: { type: "boolean" } },
            },
          },
        },
        MigrateRequest: schema(migrateRequestSchema),
        DiskResize: schema(diskResizeBody),
        DiskBackup: schema(diskBackupBody),
        DiskAdd: schema(diskAddBody),
        NicAdd: schema(nicAddBody),
        BalloonTarget: schema(balloonBody),
        QmpCommand: schema(qmpPassthroughBody),
        CloudInit: schema(cloudInitSchema),
        PoolList: {
          type: "object",
          required: ["pools"],
          properties: {
            pools: {
              type: "array",
              items: {
                type: "object",
                required: ["name", "dir", "freeBytes", "totalBytes"],
                properties: {
                  name: { type: "string" },
                  dir: { type: "string" },
                  freeBytes: { type: "integer", nullable: true },
                  totalBytes: { type: "integer", nullable: true },
                },
              },
            },
          },
        },
        Job: {
          type: "object",
          required: ["id", "kind", "vm", "state", "phase", "progress", "startedAt"],
          properties: {
            id: { type: "string" },
            kind: { type: "string" },
            vm: { type: "string" },
            state: { type: "string", enum: ["running", "succeeded", "failed", "cancelled"] },
            phase: { type: "string" },
            progress: { type: "object" },
            result: { type: "object" },
            error: { type: "object" },
          },
        },
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
  return Object.entries(s.shape).map(([name, field]) => ({
    name,
    in: "query",
    required: false,
    schema: { type: "integer" },
    ...((field as z.ZodType).description ? { description: (field as z.ZodType).description } : {}),
  }));
}

function intHeader(description: string) {
  return { description, schema: { type: "integer" } };
}
