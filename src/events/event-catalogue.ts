// Every event type the daemon publishes, declared once: its payload (the event's
// `data`) as a zod schema and one line on what it means. Publishing is typed from
// here, the README's event table is tested against it, and tests validate what a
// real daemon sends on /v1/events with these schemas. The schemas describe the JSON
// on the wire: a field the code leaves undefined is absent there, hence optional.
// This layer sits below the VM domain, so the shapes a payload shares with it (a
// state, how qemu exited) are declared here rather than imported from src/vm; an
// operation's name is an action's kind, from src/definition/vm-action.ts.
import { z } from "zod";
import { vmActionKinds } from "../definition/vm-action.js";

const vmState = z.string().describe("the VM's state as GET /v1/vms/{name} shows it");
const diskName = z.string();
const jobId = z.string();
const migrationStorage = z.enum(["shared", "copy"]);
const nicChange = z.strictObject({ mac: z.string(), index: z.number().int(), live: z.boolean() });
const diskChange = z.strictObject({ disk: diskName, live: z.boolean() });
const noPayload = z.strictObject({});

/** Why a VM's last qemu ended, as the VM's `lastExit` shows it. */
const lastExit = z.strictObject({
  at: z.string(),
  reason: z.string(),
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  detail: z.string().optional(),
});

/** Which events name a VM (`vm` is set and `?vm=` filters them), which are about the host, which about the stream. */
export type EventSubject = "vm" | "host" | "stream";

interface EventDeclaration {
  subject: EventSubject;
  payload: z.ZodType<Record<string, unknown>>;
  description: string;
}

/** The family of qemu's own events, published as `qemu.<EVENT>` (qemu.SHUTDOWN, qemu.STOP, ...). */
export const QEMU_EVENT_FAMILY = "qemu.<EVENT>";

export const eventCatalogue = {
  "vm.state": {
    subject: "vm",
    payload: z.strictObject({ state: vmState, reason: z.string(), lastExit: lastExit.optional() }),
    description: "the VM's state changed: why (an operation, a qemu event such as qemu.STOP, how qemu exited, with lastExit, or qemu.answering: a qemu that had not answered does again); only on a change",
  },
  "operation.started": {
    subject: "vm",
    payload: z.strictObject({ operation: z.enum(vmActionKinds) }),
    description: "an operation took the VM's lock; `operation` is the action's kind (start, stop, add-disk, migrate, ...: src/definition/vm-action.ts)",
  },
  "operation.ended": {
    subject: "vm",
    payload: z.strictObject({
      operation: z.enum(vmActionKinds),
      result: z.enum(["ok", "failed"]),
      error: z.strictObject({ code: z.string().optional(), message: z.string() }).optional(),
    }),
    description: "an operation ended, `ok` or `failed` with the error's code and message; the VM's new state was published first",
  },
  "job.progress": {
    subject: "vm",
    payload: z.strictObject({
      job: jobId,
      kind: z.string(),
      phase: z.string(),
      progress: z.record(z.string(), z.union([z.number(), z.string(), z.null()])),
    }),
    description: "a job (migrate, backup) entered a new phase; progress as GET /v1/jobs/{id} shows it",
  },
  "job.ended": {
    subject: "vm",
    payload: z.strictObject({
      job: jobId,
      kind: z.string(),
      state: z.enum(["succeeded", "failed", "cancelled"]),
      result: z.record(z.string(), z.unknown()).optional(),
      error: z.strictObject({ code: z.string(), detail: z.string() }).optional(),
    }),
    description: "a job finished: succeeded with its result, failed or cancelled with the error",
  },
  [QEMU_EVENT_FAMILY]: {
    subject: "vm",
    payload: z.strictObject({ data: z.record(z.string(), z.unknown()) }),
    description: "an event qemu reported for the VM (SHUTDOWN, STOP, RESUME, DEVICE_DELETED, BALLOON_CHANGE, ...) with qemu's own data",
  },
  "vm.created": {
    subject: "vm",
    payload: z.strictObject({ state: vmState }),
    description: "a VM was defined",
  },
  "vm.deleted": {
    subject: "vm",
    payload: noPayload,
    description: "a VM was deleted",
  },
  "vm.adopted": {
    subject: "vm",
    payload: z.strictObject({ state: vmState, pid: z.number().int().optional() }),
    description: "a restarted daemon took the VM back, with the pid of its qemu if one still runs",
  },
  "vm.restart-limit": {
    subject: "vm",
    payload: z.strictObject({ restarts: z.number().int() }),
    description: "onCrash restart gave up after this many restarts in a row; the VM stays crashed",
  },
  "vm.cdrom": {
    subject: "vm",
    payload: z.strictObject({ image: z.string().nullable() }),
    description: "a disc was put into the CD-ROM drive, or ejected (null)",
  },
  "vm.disk-added": {
    subject: "vm",
    payload: diskChange,
    description: "a disk was added, hot-plugged if live",
  },
  "vm.disk-removed": {
    subject: "vm",
    payload: diskChange,
    description: "a disk was removed, from the running guest if live",
  },
  "vm.nic-added": {
    subject: "vm",
    payload: nicChange,
    description: "a NIC was added, hot-plugged if live",
  },
  "vm.nic-removed": {
    subject: "vm",
    payload: nicChange,
    description: "a NIC was removed, from the running guest if live",
  },
  "vm.disk-resized": {
    subject: "vm",
    payload: z.strictObject({ disk: diskName, sizeGiB: z.number() }),
    description: "one of the VM's own disks was grown",
  },
  "vm.disk-backed-up": {
    subject: "vm",
    payload: z.strictObject({ disk: diskName, target: z.string() }),
    description: "a live backup of a disk completed into target",
  },
  "vm.disk-exported": {
    subject: "vm",
    payload: z.strictObject({ disk: diskName, uri: z.string(), tls: z.boolean() }),
    description: "a read-only NBD export of a disk as it was then began serving at uri",
  },
  "vm.disk-export-ended": {
    subject: "vm",
    payload: z.strictObject({ disk: diskName, reason: z.enum(["deleted", "vm-stopped", "server-gone"]) }),
    description: "a disk's NBD export ended: DELETE, the VM's stop, or its server found gone",
  },
  "vm.snapshot-created": {
    subject: "vm",
    payload: z.strictObject({ snapshot: z.string(), memory: z.boolean() }),
    description: "a snapshot of every disk of the VM's own was taken",
  },
  "vm.snapshot-reverted": {
    subject: "vm",
    payload: z.strictObject({ snapshot: z.string() }),
    description: "the VM's disks were returned to a snapshot",
  },
  "vm.snapshot-deleted": {
    subject: "vm",
    payload: z.strictObject({ snapshot: z.string() }),
    description: "a snapshot was merged away",
  },
  "vm.balloon": {
    subject: "vm",
    payload: z.strictObject({ targetMiB: z.number() }),
    description: "the memory balloon's target was set",
  },
  "vm.limits": {
    subject: "vm",
    payload: z.strictObject({ limits: z.record(z.string(), z.unknown()), live: z.boolean() }),
    description: "the VM's limits were changed (all of them, as now defined), held at once if live",
  },
  "qmp.passthrough": {
    subject: "vm",
    payload: z.strictObject({ command: z.string(), arguments: z.record(z.string(), z.unknown()).optional() }),
    description: "a QMP command was sent to the VM's qemu through the pass-through (secrets in the arguments redacted)",
  },
  "migration.started": {
    subject: "vm",
    payload: z.strictObject({ job: jobId, destination: z.string(), storage: migrationStorage }),
    description: "this host began sending the VM to destination",
  },
  "vm.migrated-away": {
    subject: "vm",
    payload: noPayload,
    description: "the VM now runs on the destination host and is gone from this one",
  },
  "migration.incoming": {
    subject: "vm",
    payload: z.strictObject({ uri: z.string(), storage: migrationStorage }),
    description: "this host is ready to receive the VM at uri",
  },
  "migration.committed": {
    subject: "vm",
    payload: noPayload,
    description: "an incoming VM was committed: it runs here now",
  },
  "migration.aborted": {
    subject: "vm",
    payload: z.strictObject({ why: z.string() }),
    description: "an incoming migration was given up and what it prepared here removed",
  },
  "vm.taken-over": {
    subject: "vm",
    payload: z.strictObject({ previous: z.string().optional(), revision: z.string() }),
    description: "fleet mode: the operator took the VM's owner key for this host from the previous owner",
  },
  "vm.owner-conflict": {
    subject: "vm",
    payload: z.strictObject({ owner: z.string(), revision: z.string() }),
    description: "fleet mode: a VM running here is owned by another host in etcd",
  },
  "vm.fenced": {
    subject: "vm",
    payload: z.strictObject({ pid: z.number().int(), detail: z.string() }),
    description: "fleet mode: the fence killed this ha VM's qemu because the host lease was lost or not renewed in time (lastExit.reason fenced)",
  },
  "daemon.started": {
    subject: "host",
    payload: z.strictObject({ qemuVersion: z.string(), accel: z.enum(["kvm", "tcg"]) }),
    description: "the daemon opened its API, with the host's qemu version and accelerator",
  },
  "daemon.adopted": {
    subject: "host",
    payload: z.strictObject({ vms: z.number().int(), running: z.number().int() }),
    description: "every VM known at start was adopted; how many, and how many run",
  },
  "host.orphan-qemu": {
    subject: "host",
    payload: z.strictObject({ pid: z.number().int(), name: z.string().optional(), uuid: z.string().optional() }),
    description: "a qemu of this run directory belongs to no VM; left running for the operator (vm is its -name, if any)",
  },
  "host.lease-lost": {
    subject: "host",
    payload: z.strictObject({ hostId: z.string() }),
    description: "fleet mode: this host's lease expired or was revoked at etcd; its ha VMs' owner keys are gone",
  },
  "host.maintenance-started": {
    subject: "host",
    payload: z.strictObject({ since: z.string() }),
    description: "the host entered maintenance (POST /v1/host/evacuate): it takes no new start and no incoming migration",
  },
  "host.evacuation-progress": {
    subject: "host",
    payload: z.strictObject({
      job: jobId,
      vm: z.string(),
      state: z.enum(["pending", "migrating", "done", "failed", "skipped"]),
      destination: z.string().optional(),
      reason: z.string().optional(),
    }),
    description: "one VM of an evacuation changed state (migrating, done, failed or skipped with why); the VM is named in the data",
  },
  "host.evacuation-finished": {
    subject: "host",
    payload: z.strictObject({
      job: jobId,
      state: z.enum(["succeeded", "incomplete", "cancelled"]),
      total: z.number().int(),
      pending: z.number().int(),
      migrating: z.number().int(),
      done: z.number().int(),
      failed: z.number().int(),
      skipped: z.number().int(),
      durationMs: z.number(),
    }),
    description: "an evacuation ended: every VM moved, some stay (incomplete), or it was cancelled; the host stays in maintenance",
  },
  "host.maintenance-ended": {
    subject: "host",
    payload: noPayload,
    description: "maintenance ended (POST /v1/host/resume): starts and incoming migrations are taken again",
  },
  "events.lost": {
    subject: "stream",
    payload: z.strictObject({
      afterId: z.number().int(),
      lostFrom: z.number().int().optional(),
      lostTo: z.number().int().optional(),
      firstAvailable: z.number().int(),
      reason: z.string(),
    }),
    description: "first on a resumed stream whose missed events the ring no longer holds (or whose id is from an earlier run); no id",
  },
  "events.dropped": {
    subject: "stream",
    payload: z.strictObject({ afterId: z.number().int(), reason: z.string() }),
    description: "last on the stream of a client that did not keep up, before it is disconnected; resume after afterId; no id",
  },
} as const satisfies Record<string, EventDeclaration>;

type Catalogue = typeof eventCatalogue;
type QemuEventType = `qemu.${string}`;

/** Every type the daemon may publish or the stream may carry. */
export type EventType = Exclude<keyof Catalogue, typeof QEMU_EVENT_FAMILY> | QemuEventType;

/** The types published on the bus (with an id); the stream's own are written by the SSE route. */
export type BusEventType = Exclude<EventType, "events.lost" | "events.dropped">;

type DeclaredAs<K extends EventType> = K extends QemuEventType ? typeof QEMU_EVENT_FAMILY : K extends keyof Catalogue ? K : never;

/** The `data` of an event of type K, as the code hands it over (optional fields may be undefined). */
export type EventPayload<K extends EventType> = z.input<Catalogue[DeclaredAs<K>]["payload"]>;

/** The declaration an event type falls under, or undefined for a type never declared. */
export function eventDeclaration(type: string): EventDeclaration | undefined {
  if (Object.hasOwn(eventCatalogue, type)) return eventCatalogue[type as keyof Catalogue];
  return /^qemu\.[A-Z0-9_]+$/.test(type) ? eventCatalogue[QEMU_EVENT_FAMILY] : undefined;
}
