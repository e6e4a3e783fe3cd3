// Request shapes of the HTTP API that are not VM definitions. Shared by the
// routes (validation) and the OpenAPI document.
import { z } from "zod";
import { cdromSchema, vmNameSchema } from "../definition/vm-definition.js";

export const vmParams = z.object({ name: vmNameSchema }).strict();
export const vmActionParams = z
  .object({ name: vmNameSchema, action: z.enum(["start", "shutdown", "stop", "reset", "pause", "resume"]) })
  .strict();

export const waitQuery = z
  .object({
    wait: z
      .enum(["true", "false"])
      .default("true")
      .describe("false: answer 202 at once and let the operation run; watch the VM for its end"),
  })
  .strict();

/** GET /v1/vms and /v1/vms/{name}: what a view leaves out unless asked for. */
export const vmViewQuery = z
  .object({
    include: z
      .enum(["cloud-init"])
      .optional()
      .describe("cloud-init: the definition's cloud-init userData too (left out otherwise: it often holds secrets)"),
  })
  .strict();

export const shutdownBody = z
  .object({ timeoutSec: z.number().int().min(1).max(3600).optional().describe("default 60") })
  .strict();
export const emptyBody = z.object({}).strict();

/** A console-log answer is one page: a large log is read in several requests, never held whole. */
export const CONSOLE_LOG_PAGE_MAX = 1024 * 1024;

export const consoleLogQuery = z
  .object({
    offset: z.coerce
      .number()
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .default(0)
      .describe("position in the whole log since it began; before X-Console-Log-Start reads from there"),
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(CONSOLE_LOG_PAGE_MAX)
      .default(CONSOLE_LOG_PAGE_MAX)
      .describe("most bytes in this answer (at most 1 MiB); follow X-Console-Next-Offset for more"),
  })
  .strict();

export const consoleQuery = z
  .object({
    mode: z
      .enum(["ro", "rw"])
      .default("ro")
      .describe("rw: type into the console (one writer at a time); ro: watch"),
  })
  .strict();

/** POST /v1/vms/{name}/cdrom: the definition's cdrom image, required. */
export const cdromChangeBody = z
  .object({ image: cdromSchema.shape.image.unwrap().describe("an ISO image (raw) in a storage pool") })
  .strict()
  .describe("the ISO to put into the CD-ROM drive");

export const eventsQuery = z
  .object({
    vm: vmNameSchema.optional().describe("only the events of this VM"),
    since: z.coerce
      .number()
      .int()
      .min(0)
      .max(Number.MAX_SAFE_INTEGER)
      .optional()
      .describe("resume after this event id (the Last-Event-ID header wins over it)"),
  })
  .strict();
