#!/usr/bin/env -S node --lite-mode --no-expose-wasm --max-semi-space-size=1
// dist/bundle/vmhostd.js: starts the bundled daemon (vmhostd.cjs beside it,
// scripts/bundle.mjs) through V8's code cache. Compiling the bundle's
// megabytes was the largest single cost of a start (node 20 has no module
// compile cache of its own): with the cache V8 reads the compiled start-up code
// back instead. The cache is written beside the bundle once the daemon has
// started (so it holds what start-up compiled), and again whenever V8 rejects
// it (another node, other flags, a rebuilt bundle): a stale cache costs one
// ordinary start, never a wrong one. The node flags are main.ts's.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import vm from "node:vm";

/** Long enough for start-up and adoption to have compiled their code, so the cache holds it. */
const WRITE_CACHE_AFTER_MS = 5_000;

const bundle = path.join(path.dirname(fileURLToPath(import.meta.url)), "vmhostd.cjs");
const cacheFile = `${bundle}.v8-cache`;
let cachedData: Buffer | undefined;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // no cache yet: this start compiles, and writes one
}
// As node wraps a CommonJS module, plus the bundle's own URL for what was import.meta.url
// (scripts/bundle.mjs); the #! line (the bundle's first) is left out, so "use strict" leads.
const source = readFileSync(bundle, "utf8").replace(/^#!.*\n/, "");
const script = new vm.Script(`(function (exports, require, module, __filename, __dirname, __vmhImportMetaUrl) {${source}\n})`, {
  filename: bundle,
  ...(cachedData ? { cachedData } : {}),
  // What the bundle leaves in node_modules (etcd3, fleet mode only) it imports at run time.
});
if (!cachedData || script.cachedDataRejected) {
  setTimeout(() => {
    try {
      const tmp = `${cacheFile}.${process.pid}.tmp`;
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cacheFile);
    } catch {
      // a read-only install: every start compiles, as without the cache
    }
  }, WRITE_CACHE_AFTER_MS).unref();
}
const module = { exports: {} };
(script.runInThisContext() as (...args: unknown[]) => void).call(
  module.exports,
  module.exports,
  createRequire(bundle),
  module,
  bundle,
  path.dirname(bundle),
  pathToFileURL(bundle).href,
);
