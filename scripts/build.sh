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

# The console page (web/console) with noVNC and xterm.js beside it, copied from
# node_modules so that the page loads nothing from elsewhere and works offline;
# the daemon serves dist/web/console at /console/assets/.
assets=dist/web/console
rm -rf "$assets"
mkdir -p "$assets/novnc" "$assets/xterm"
cp web/console/* "$assets/"
cp -r node_modules/@novnc/novnc/core node_modules/@novnc/novnc/vendor node_modules/@novnc/novnc/LICENSE.txt "$assets/novnc/"
cp node_modules/@xterm/xterm/lib/xterm.mjs node_modules/@xterm/xterm/css/xterm.css node_modules/@xterm/xterm/LICENSE "$assets/xterm/"
