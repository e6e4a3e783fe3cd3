// The daemon, vmctl and the fence process bundled by esbuild under dist/bundle/,
// so a start reads a few files instead of resolving and loading some 700 modules:
//   vmhostd.js   the launcher (src/launch/vmhostd-launcher.ts): runs vmhostd.cjs through V8's code cache
//   vmhostd.cjs  the daemon, one CommonJS file (what node's vm.Script can cache)
//   vmctl.js     vmctl, an ES module; what one command alone needs (the console's WebSocket) in a chunk of its own
//   fence-main.js  the fence process fleet mode spawns (found beside the daemon's file)
// Source maps are kept beside each (.map): `NODE_OPTIONS=--enable-source-maps`
// turns stack traces back into TypeScript, at about 0.1 s of CPU per start.
import { build } from "esbuild";

const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  sourcemap: true,
  // Less to parse at every start; the source maps give names and lines back.
  minify: true,
  // Error classes and fastify plugins are told apart by name.
  keepNames: true,
  logLevel: "warning",
};
// The dependencies are CommonJS modules that require node's own modules: an ES module bundle needs a require.
const esmRequire = 'import { createRequire as __vmhCreateRequire } from "node:module"; const require = __vmhCreateRequire(import.meta.url);';

/**
 * Fleet mode's etcd client reads its gRPC .proto files beside its own code at run time,
 * so it stays in node_modules. Its `await import("etcd3")` becomes a module of the bundle
 * that requires it from there (with --etcd only): a dynamic import() left in a script
 * that V8's code cache runs would need node's experimental vm loader.
 */
const etcd3FromNodeModules = {
  name: "etcd3-from-node-modules",
  setup(b) {
    b.onResolve({ filter: /^etcd3$/ }, (args) =>
      args.namespace === "etcd3-shim" ? { path: "etcd3", external: true } : { path: "etcd3", namespace: "etcd3-shim" },
    );
    b.onLoad({ filter: /.*/, namespace: "etcd3-shim" }, () => ({ contents: 'module.exports = require("etcd3");', loader: "js" }));
  },
};

await Promise.all([
  build({
    ...common,
    entryPoints: { vmhostd: "src/main.ts" },
    outdir: "dist/bundle",
    outExtension: { ".js": ".cjs" },
    format: "cjs",
    // fence-supervisor.ts finds fence-main.js beside its own file: the bundle's
    // URL, handed in by the launcher (a banner would come before "use strict").
    define: { "import.meta.url": "__vmhImportMetaUrl" },
    plugins: [etcd3FromNodeModules],
  }),
  build({ ...common, entryPoints: { vmhostd: "src/launch/vmhostd-launcher.ts" }, outdir: "dist/bundle", format: "esm", sourcemap: false }),
  build({ ...common, entryPoints: { "fence-main": "src/fleet/fence/fence-main.ts" }, outdir: "dist/bundle", format: "esm", banner: { js: esmRequire } }),
  build({
    ...common,
    entryPoints: { vmctl: "src/cli/vmctl.ts" },
    outdir: "dist/bundle",
    format: "esm",
    splitting: true,
    chunkNames: "vmctl-[name]-[hash]",
    banner: { js: esmRequire },
  }),
]);
