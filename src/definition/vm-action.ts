// Every change to a VM, as one typed action: the one vocabulary of operations.
// Routes and the CLI produce these, the operation lock and the journal hold them
// by their kind, `operation.started`/`operation.ended` events and the VM view's
// `operation.name` report it, and VmRegistry.perform carries them out. The zod
// schema is the type (z.output), so a journal entry read back after a restart is
// checked against the very union the code switches over. It sits beside the
// definition so that every layer (the journal in store/, the event catalogue)
// may name an action without reaching up into the VM domain.
import { z } from "zod";
import { cloudInitSchema, diskSchema, nicAddressesSchema, nicFilteringSchema, nicSchema, vmCreateSchema } from "./vm-definition.js";
import { limitsPatchSchema } from "../limits/limits-schema.js";

const timeoutSec = z.number().positive().optional();
const storage = z.enum(["shared", "copy"]);

export const vmActionSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("create"), definition: vmCreateSchema }),
  z.strictObject({ kind: z.literal("delete") }),
  z.strictObject({ kind: z.literal("start") }),
  z.strictObject({ kind: z.literal("shutdown"), timeoutSec }),
  z.strictObject({ kind: z.literal("stop") }),
  z.strictObject({ kind: z.literal("reset") }),
  z.strictObject({ kind: z.literal("pause") }),
  z.strictObject({ kind: z.literal("resume") }),
  /** Put this ISO (a path in a pool) into the CD-ROM drive, replacing any disc. */
  z.strictObject({ kind: z.literal("change-cdrom"), image: z.string() }),
  z.strictObject({ kind: z.literal("eject-cdrom") }),
  /** Grow one of the VM's own disks to this size (at once if it runs). */
  z.strictObject({ kind: z.literal("resize-disk"), disk: z.string(), sizeGiB: z.number().positive() }),
  /** Hot-plug (running) or add to the definition (stopped) a disk or NIC; remove one. */
  z.strictObject({ kind: z.literal("add-disk"), disk: diskSchema }),
  z.strictObject({ kind: z.literal("remove-disk"), disk: z.string(), timeoutSec }),
  z.strictObject({ kind: z.literal("add-nic"), nic: nicSchema }),
  /** `nic`: its index in the definition or its MAC. */
  z.strictObject({ kind: z.literal("remove-nic"), nic: z.string(), timeoutSec }),
  /** A bridged NIC's addresses and filtering, changed in one nft transaction while the VM runs. */
  z.strictObject({ kind: z.literal("set-nic-filter"), nic: z.string(), addresses: nicAddressesSchema.optional(), filtering: nicFilteringSchema.optional() }),
  z.strictObject({ kind: z.literal("set-balloon"), targetMiB: z.number().int().positive() }),
  /** Replace (or with undefined remove) the cloud-init seed's content; the next start attaches it. */
  z.strictObject({ kind: z.literal("set-cloud-init"), cloudInit: cloudInitSchema.optional() }),
  /** Merge this patch into the VM's limits (under its lock), applied at once if it runs. */
  z.strictObject({ kind: z.literal("set-limits"), patch: limitsPatchSchema }),
  /** Copy one disk of a running VM to a file in a pool, as a job. */
  z.strictObject({
    kind: z.literal("backup"),
    disk: z.string(),
    target: z.string(),
    format: z.enum(["qcow2", "raw"]),
    /** Incremental: only what the disk's dirty bitmap marks since `since` (the latest backup); full when it cannot be. */
    mode: z.enum(["full", "incremental"]).optional(),
    since: z.string().optional(),
    /** Bandwidth limit, so a backup does not starve the guest's own I/O. */
    speedMiBps: z.number().positive().optional(),
  }),
  /** New overlays on every disk of the VM's own (running, paused or stopped), atomically. */
  z.strictObject({ kind: z.literal("snapshot-create"), name: z.string(), memory: z.boolean() }),
  /** Every disk back to a snapshot (VM stopped, or stopped first with force); later snapshots go. */
  z.strictObject({ kind: z.literal("snapshot-revert"), snapshot: z.string(), force: z.boolean().optional() }),
  /** A snapshot merged away (live: block-commit), as a job. */
  z.strictObject({ kind: z.literal("snapshot-delete"), snapshot: z.string() }),
  /** A read-only NBD export of one disk as it is now, with its dirty bitmap (pull-mode backup); and its end. */
  z.strictObject({ kind: z.literal("export-disk"), disk: z.string(), tls: z.boolean().optional(), speedMiBps: z.number().positive().optional() }),
  z.strictObject({ kind: z.literal("unexport-disk"), disk: z.string() }),
  /** Send the running VM to another host (migrate out), as a job. */
  z.strictObject({
    kind: z.literal("migrate"),
    destination: z.string(),
    storage,
    maxDowntimeMs: z.number().int().positive().optional(),
    bandwidthMiBps: z.number().int().positive().optional(),
    autoConverge: z.boolean().optional(),
    postcopy: z.boolean().optional(),
  }),
  /**
   * The operator's word on a migration out whose outcome is unknown (the guest
   * paused here): `committed` removes the copy here, `aborted` resumes it (fleet
   * mode: only with the owner key still this host's).
   */
  z.strictObject({ kind: z.literal("resolve-migration"), outcome: z.enum(["committed", "aborted"]) }),
  /** Receive a VM another host sends (migrate in). */
  z.strictObject({ kind: z.literal("migrate-in"), storage }),
  /** Fleet mode: the operator writes the owner key for this host, whoever held it. */
  z.strictObject({ kind: z.literal("takeover") }),
  /** A pass-through QMP command that may change the VM (anything but a query). */
  z.strictObject({ kind: z.literal("qmp"), command: z.string(), arguments: z.record(z.string(), z.unknown()).optional() }),
  /** The daemon's own at its start: re-attach the VM's qemu and read its journal. */
  z.strictObject({ kind: z.literal("adopt") }),
  /** The daemon's own, fleet mode: a VM that no longer runs here and will not be restarted here gives its owner key back. */
  z.strictObject({ kind: z.literal("release-owner") }),
]);

export type VmAction = z.output<typeof vmActionSchema>;
export type VmActionKind = VmAction["kind"];
/** One action of the union by its kind. */
export type ActionOf<K extends VmActionKind> = Extract<VmAction, { kind: K }>;

export const vmActionKinds = vmActionSchema.options.map((o) => o.shape.kind.value) as [VmActionKind, ...VmActionKind[]];

export function assertNever(x: never): never {
  throw new Error(`unhandled action ${JSON.stringify(x)}`);
}
