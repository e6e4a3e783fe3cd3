// parseInput: every body, parameter and query goes through a zod schema; a
// failure is VMH_ERR_VALIDATION (400) naming each offending field as a dotted
// path, an unknown key by its own name, and the part itself when no field is to blame.
import t from "tap";
import { z } from "zod";
import { ValidationFailed } from "../../src/errors.js";
import { vmParams } from "../../src/http/schemas.js";
import { parseInput, type InputPart } from "../../src/http/validation.js";
import { vmCreateSchema } from "../../src/definition/vm-definition.js";

function failure(schema: z.ZodType, value: unknown, part: InputPart = "body"): ValidationFailed {
  try {
    parseInput(schema, value, part);
  } catch (err) {
    if (err instanceof ValidationFailed) return err;
    throw err;
  }
  throw new Error("parseInput accepted the input");
}

t.test("valid input comes back parsed, defaults filled in", async (t) => {
  const query = z.object({ wait: z.enum(["true", "false"]).default("true"), limit: z.coerce.number().int().default(10) }).strict();
  t.same(parseInput(query, {}, "query"), { wait: "true", limit: 10 });
  t.same(parseInput(query, { limit: "3" }, "query"), { wait: "true", limit: 3 }, "a query string is coerced by its schema");
  t.same(parseInput(vmParams, { name: "web-1" }, "params"), { name: "web-1" });
});

t.test("a failure is VMH_ERR_VALIDATION (400) naming the field by its dotted path", async (t) => {
  const err = failure(vmCreateSchema, { name: "web-1", disks: [{ name: "root", sizeGiB: 1 }, { name: "data", sizeGiB: "big" }] });
  t.type(err, ValidationFailed);
  t.match(err, { code: "VMH_ERR_VALIDATION", status: 400 });
  t.same(err.issues.map((i) => i.field), ["disks.1.sizeGiB"], "the list index is part of the path");
  t.equal(err.fields.field, "disks.1.sizeGiB", "the first field is also a problem field of its own");
  t.match(err.message, /^invalid body: disks\.1\.sizeGiB: /, "the message says which part and which field");
});

t.test("an unknown key is named by itself, not by the object holding it", async (t) => {
  const err = failure(vmCreateSchema, { name: "web-1", boot: { kernel: "k", kernal: "typo" } });
  t.same(err.issues, [{ field: "boot.kernal", message: "unknown field kernal" }]);
  const two = failure(vmParams, { name: "web-1", x: 1, y: 2 }, "params");
  t.same(two.issues, [{ field: "x", message: "unknown fields x, y" }], "several at once: the first names the field, the message lists all");
  t.equal(two.message, "invalid params: x: unknown fields x, y");
});

t.test("an issue with no path names the part", async (t) => {
  const err = failure(z.object({}).strict(), "not an object", "body");
  t.equal(err.issues[0]?.field, "body");
  const q = failure(z.object({ a: z.string() }).refine(() => false, { message: "never" }), { a: "x" }, "query");
  t.same(q.issues, [{ field: "query", message: "never" }], "a whole-object refinement");
  t.equal(q.message, "invalid query: query: never");
});

t.test("every issue is reported, in order, in the message too", async (t) => {
  const err = failure(vmCreateSchema, { name: "Web_1", vcpus: 0, firmware: "uefi", machine: "pc" });
  const fields = err.issues.map((i) => i.field);
  t.ok(fields.includes("name") && fields.includes("vcpus"), `each bad field is named (${fields.join(", ")})`);
  t.equal(err.message, `invalid body: ${err.issues.map((i) => `${i.field}: ${i.message}`).join("; ")}`);
});
