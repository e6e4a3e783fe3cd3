// Request shapes of the storage endpoints (/v1/pools, a VM's disks). Shared by
// the routes (validation) and the OpenAPI document.
import { z } from "zod";
import { DISK_NAME_PATTERN, MAX_DISK_GIB, vmNameSchema } from "../definition/vm-definition.js";

export const diskParams = z
  .object({ name: vmNameSchema, disk: z.string().regex(DISK_NAME_PATTERN, "must be a disk name") })
  .strict();

export const diskResizeBody = z
  .object({
    sizeGiB: z.number().positive().max(MAX_DISK_GIB).describe("the disk's new size; it may only grow"),
  })
  .strict();

export const diskBackupBody = z
  .object({
    target: z
      .string()
      .min(1)
      .max(4096)
      .refine((p) => !p.includes("\0"), "must not contain NUL")
      .describe("the image to create, in a storage pool (relative: in the images pool); must not exist"),
    format: z.enum(["qcow2", "raw"]).default("qcow2"),
    mode: z
      .enum(["full", "incremental"])
      .default("full")
      .describe("incremental: only the blocks the disk's dirty bitmap marks since the latest backup; made full (with the reason in the job) when that cannot be trusted"),
    since: z.string().max(100).optional().describe("the backup (a finished job's result.backupId) an incremental one builds on; the latest"),
    speedMiBps: z.number().int().min(1).max(1024 * 1024).optional().describe("bandwidth limit of the copy"),
  })
  .strict();
