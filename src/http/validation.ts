// Every body, parameter and query goes through a zod schema (each route's
// `schema`, run by fastify before the handler); a failure becomes
// VMH_ERR_VALIDATION naming the offending field as a dotted path.
import type { FastifyError } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import type { z } from "zod";
import { ValidationFailed } from "../errors.js";

export type InputPart = "body" | "params" | "query" | "headers";

interface Issue {
  path: readonly PropertyKey[];
  code: string;
  message: string;
  keys?: readonly string[];
}

function validationFailed(issues: Issue[], part: InputPart): ValidationFailed {
  const named = issues.map((i) => {
    // An unknown key is named by the key itself, not by its parent object.
    const keys = i.code === "unrecognized_keys" ? (i.keys ?? []) : [];
    const field = [...i.path.map(String), ...keys.slice(0, 1)].join(".") || part;
    const message = i.code === "unrecognized_keys" ? `unknown field${keys.length > 1 ? "s" : ""} ${keys.join(", ")}` : i.message;
    return { field, message };
  });
  const summary = named.map((i) => `${i.field}: ${i.message}`).join("; ");
  return new ValidationFailed(`invalid ${part}: ${summary}`, named);
}

export function parseInput<S extends z.ZodType>(schema: S, value: unknown, part: InputPart): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw validationFailed(result.error.issues as Issue[], part);
}

/** fastify's error for a request its route schema refused, as the same VMH_ERR_VALIDATION; undefined for any other error. */
export function fromSchemaValidation(err: unknown): ValidationFailed | undefined {
  if (!hasZodFastifySchemaValidationErrors(err)) return undefined;
  const context = (err as FastifyError).validationContext;
  const part: InputPart = context === "querystring" ? "query" : context === "params" || context === "headers" ? context : "body";
  const issues = err.validation.map((v) => ({
    // The type provider keeps an issue's path only as "/a/0/b".
    path: v.instancePath.split("/").filter((s) => s !== ""),
    code: v.keyword,
    message: v.message ?? "invalid",
    keys: (v.params as { keys?: string[] }).keys,
  }));
  return validationFailed(issues, part);
}
