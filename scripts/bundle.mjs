// The daemon, vmctl and the fence process as bundled ES modules under
// dist/bundle/: one file each plus the chunks they load on demand (etcd3,
// systeminformation, the OpenAPI collector...), so a start reads a few files
// instead of resolving and loading some 700 modules. Source maps are kept
// beside them (node --enable-source-maps prints TypeScript positions).
import { build } from "esbuild";

await build({
  entryPoints: {
    vmhostd: "src/main.ts",
    vmctl: "src/cli/vmctl.ts",
    // Spawned by fence-supervisor.ts, which looks for it beside itself.
    "fence-main": "src/fleet/fence/fence-main.ts",
  },
  outdir: "dist/bundle",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  sourcemap: true,
  // Less to parse at every start (node compiles the whole module before running it);
  // the source maps give stack traces their TypeScript names and lines back.
  minify: true,
  // Error classes and fastify plugins are told apart by name.
  keepNames: true,
  // Beside the entries: fence-supervisor finds fence-main.js beside its own file, whichever chunk that is.
  chunkNames: "[name]-[hash]",
  // The dependencies are CommonJS modules that require node's own modules: give the ES module bundle a require.
  banner: { js: 'import { createRequire as __vmhCreateRequire } from "node:module"; const require = __vmhCreateRequire(import.meta.url);' },
  logLevel: "warning",
});
