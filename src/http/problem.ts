// Errors leave the daemon as RFC 9457 problem documents with a stable `code`.
// Known errors map one to one; fastify's own (bad JSON, body too large, wrong
// content type) are folded into the catalogue; anything else is a 500 whose
// details go to the log, not the client.
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import {
  InternalError,
  PayloadTooLarge,
  StateDiskFull,
  StateWriteFailed,
  UnsupportedMediaType,
  ValidationFailed,
  VmhError,
} from "../errors.js";
import { fromSchemaValidation } from "./validation.js";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  field?: string;
  [extra: string]: unknown;
}

export function toProblem(err: VmhError): Problem {
  const title = (err.constructor as unknown as { title?: string }).title ?? err.code;
  return {
    type: `urn:vmhostd:problem:${err.code}`,
    title,
    status: err.status,
    code: err.code,
    detail: err.message,
    ...err.fields,
  };
}

/** Maps anything thrown in a route (or by fastify before the route) to a VmhError. */
export function asVmhError(err: unknown): VmhError {
  if (err instanceof VmhError) return err;
  const errno = (err as NodeJS.ErrnoException).code;
  // A full disk is told apart from a failing one: the operator's remedy differs (free space vs. replace the disk).
  if (errno === "ENOSPC" || errno === "EDQUOT") {
    return new StateDiskFull(`the state disk is full; cannot record state: ${(err as Error).message}`, { errno });
  }
  if (errno === "EROFS" || errno === "EIO") {
    return new StateWriteFailed(`cannot record state: ${(err as Error).message}`, { errno });
  }
  const invalid = fromSchemaValidation(err);
  if (invalid) return invalid;
  const fe = err as Partial<FastifyError>;
  const status = fe.statusCode ?? 0;
  if (status === 413) return new PayloadTooLarge(fe.message ?? "request body too large", { field: "body" });
  if (status === 415) return new UnsupportedMediaType(fe.message ?? "unsupported media type", { field: "body" });
  if (status >= 400 && status < 500) {
    const msg = fe.message ?? "bad request";
    return new ValidationFailed(`invalid body: ${msg}`, [{ field: "body", message: msg }]);
  }
  return new InternalError("internal error; see the daemon's log");
}

export function sendProblem(reply: FastifyReply, err: VmhError): FastifyReply {
  return reply.status(err.status).type(PROBLEM_CONTENT_TYPE).send(toProblem(err));
}

export function errorHandler(this: unknown, err: unknown, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  const vmhErr = asVmhError(err);
  if (vmhErr.status >= 500) req.log.error({ err }, "request failed");
  else req.log.debug({ code: vmhErr.code, detail: vmhErr.message }, "request refused");
  return sendProblem(reply, vmhErr);
}
