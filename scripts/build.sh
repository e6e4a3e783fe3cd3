#!/usr/bin/env bash
# The npm dependencies, the TypeScript build and the bundles, each skipped when already done:
# all that `npm run test:unit` needs, and the last part of scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm dependencies" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

# tsc rewrites only the outputs whose sources changed, so the stamp, not an
# output file, tells when the last build ran.
stamp=dist/.build-stamp
if [ ! -f dist/src/main.js ] || [ ! -f dist/bundle/vmhostd.js ] || [ ! -f "$stamp" ] || [ -n "$(find src test bench scripts/bundle.mjs tsconfig.json -newer "$stamp" \( -name '*.ts' -o -name '*.mjs' -o -name tsconfig.json \) 2>/dev/null | head -1)" ]; then
  echo "setup: building" >&2
  npx tsc -p tsconfig.json
  # What `npm start`, the systemd units and the package's bin run: the daemon and
  # vmctl bundled (scripts/bundle.mjs). The tests run tsc's dist/ as it is.
  rm -rf dist/bundle
  node scripts/bundle.mjs
  touch "$stamp"
fi
