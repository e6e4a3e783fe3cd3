// Every error code exists in the README, and every code the README lists exists.
import { readFile } from "node:fs/promises";
import path from "node:path";
import t from "tap";
import { errorCatalogue } from "../src/errors.js";
import { distRoot } from "./helpers/dist-root.js";

t.test("error codes and the README agree", async (t) => {
  const readme = await readFile(path.join(distRoot, "..", "README.md"), "utf8");
  const documented = new Set(readme.match(/VMH_ERR_[A-Z_]+/g) ?? []);
  const codes = new Set<string>(errorCatalogue.map((e) => e.code));
  for (const c of codes) t.ok(documented.has(c), `${c} is documented`);
  for (const c of documented) t.ok(codes.has(c), `${c} (in the README) exists`);
  t.equal(codes.size, errorCatalogue.length, "codes are unique");
});
