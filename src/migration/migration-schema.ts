// The shapes exchanged for a live migration: what an operator asks of the source,
// and what the source daemon asks of the destination daemon.
import { z } from "zod";
import { MAX_DISK_GIB, vmDefinitionSchema } from "../definition/vm-definition.js";
import { migrationIdSchema } from "./outcome-record.js";
import { backupRecordSchema } from "../vm/backups/backup-record.js";
import { snapshotRecordSchema } from "../vm/snapshots/snapshot-record.js";

export const migrateRequestSchema = z
  .object({
    destination: z.url({ protocol: /^https?$/ }).describe("base URL of the destination host's vmhostd, e.g. http://10.0.0.2:8600"),
    storage: z.enum(["shared", "copy"]).describe("shared: both hosts see the same images; copy: disks are copied over NBD"),
    maxDowntimeMs: z.number().int().min(1).max(60_000).optional(),
    bandwidthMiBps: z.number().int().min(1).max(100_000).optional(),
    autoConverge: z.boolean().optional(),
    postcopy: z.boolean().optional(),
  })
  .strict();
export type MigrateRequest = z.output<typeof migrateRequestSchema>;

/** A file the guest uses, named by storage pool so each host can find its own copy. */
export const poolFileSchema = z.object({ pool: z.string(), relative: z.string() }).strict();

export const incomingRequestSchema = z
  .object({
    definition: vmDefinitionSchema,
    storage: z.enum(["shared", "copy"]),
    /** Pool-relative locations of the files the definition names, by definition field path. */
    files: z.record(z.string(), poolFileSchema),
    /**
     * Virtual sizes of the disks to create for a copy, by disk name. The source
     * says them, and qcow2 metadata is preallocated in proportion: no larger
     * than a definition may ask for.
     */
    diskSizes: z.record(z.string(), z.number().int().positive().max(MAX_DISK_GIB * 1024 ** 3)).default({}),
    postcopy: z.boolean().default(false),
    /** The VM's backups and their checkpoints: the dirty bitmaps come in qemu's stream, their record with it. */
    backups: backupRecordSchema.optional(),
    /**
     * The VM's snapshots (its snapshots.json), storage copy only: the layers under
     * each disk's top were sent ahead under the migration's id; the tops are made here.
     */
    snapshots: snapshotRecordSchema.optional(),
    /** Fleet mode: the source's hold on the owner key, which the destination swaps to itself at commit. */
    owner: z.object({ host: z.string().min(1), revision: z.string().regex(/^\d+$/) }).strict().optional(),
    /** The migration's id, made by the source: the destination records the outcome under it. */
    migration: migrationIdSchema.optional(),
    /** The source sends RAM and disks over TLS (its --tls-ca is set); a destination takes them as the source sends or refuses. */
    tls: z.boolean().default(false),
    /** RAM connections (qemu's multifd when more than 1): the destination must expect as many. */
    channels: z.number().int().min(1).max(16).default(1),
  })
  .strict();
export type IncomingRequest = z.output<typeof incomingRequestSchema>;

export interface IncomingReply {
  /** Where the source sends RAM: qemu's `tcp:HOST:PORT`. */
  uri: string;
  /** For storage copy: where each disk is exported over NBD. */
  nbd?: { host: string; port: number; exports: Record<string, string> };
  /** The id the outcome is recorded under. */
  migration?: string;
}

/** What the destination says about an incoming VM, for a source that must know the outcome. */
export type IncomingState = "preparing" | "receiving" | "running" | "aborted";
