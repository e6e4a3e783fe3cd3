// Every body, parameter and query goes through a zod schema here; a failure
// becomes VMH_ERR_VALIDATION naming the offending field as a dotted path.
import type { z } from "zod";
import { ValidationFailed } from "../errors.js";

export type InputPart = "body" | "params" | "query";

export function parseInput<S extends z.ZodType>(schema: S, value: unknown, part: InputPart): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => {
    const base = i.path.map(String);
    // An unknown key is named by the key itself, not by its parent object.
    const keys = i.code === "unrecognized_keys" ? (i as { keys: string[] }).keys : [];
    const field = [...base, ...keys.slice(0, 1)].join(".") || part;
    const message = i.code === "unrecognized_keys" ? `unknown field${keys.length > 1 ? "s" : ""} ${keys.join(", ")}` : i.message;
    return { field, message };
  });
  const summary = issues.map((i) => `${i.field}: ${i.message}`).join("; ");
  throw new ValidationFailed(`invalid ${part}: ${summary}`, issues);
}
