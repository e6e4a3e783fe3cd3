// Request shapes of the device endpoints (disks and NICs added and removed, the
// balloon). Shared by the routes (validation) and the OpenAPI document.
import { z } from "zod";
import { diskSchema, DISK_NAME_PATTERN, MAC_PATTERN, nicAddressesSchema, nicFilteringSchema, nicSchema, vmNameSchema } from "../definition/vm-definition.js";

export const diskAddBody = diskSchema.describe("a disk entry as in the definition: {name, sizeGiB} (a new blank disk) or {name, image}");
export const nicAddBody = nicSchema.describe("a NIC entry as in the definition; the MAC is generated when absent");
export const nicFilterBody = z
  .object({ addresses: nicAddressesSchema.optional(), filtering: nicFilteringSchema.optional() })
  .strict()
  .describe("a bridged NIC's addresses and/or filtering; what is absent stays as it is");
export const diskRefParams = z.object({ name: vmNameSchema, disk: z.string().regex(DISK_NAME_PATTERN, "must be a disk name") }).strict();
export const nicRefParams = z
  .object({
    name: vmNameSchema,
    nic: z
      .string()
      .refine((s) => /^\d{1,2}$/.test(s) || MAC_PATTERN.test(s.toLowerCase()), "must be the NIC's index or its MAC")
      .describe("the NIC's index in the definition, or its MAC"),
  })
  .strict();
export const deviceRemoveQuery = z
  .object({
    timeoutSec: z.coerce
      .number()
      .int()
      .min(1)
      .max(600)
      .optional()
      .describe("how long to wait for the guest to release the device (default 30); then 504 and the removal stays pending"),
  })
  .strict();
export const balloonBody = z
  .object({ targetMiB: z.number().int().min(16).describe("the memory the guest should be left with, in MiB") })
  .strict();
