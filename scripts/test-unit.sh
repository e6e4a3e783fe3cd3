#!/usr/bin/env bash
# `npm run test:unit`: the unit tests alone (test/**/*.unit.test.ts, README "Tests"),
# built first when a source changed. Each file runs in a node process of its own,
# as under tap in `npm test`; the runner is node's own because tap's runner and
# its loaders cost over twice the CPU per file, which on two cores is most of
# the time. The files are tap tests either way: plain node programs printing TAP.
# Arguments go to node's runner (e.g. --test-reporter=spec).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
# From the sources, not dist/: a test renamed or deleted leaves its old build behind.
mapfile -t files < <(find test -name '*.unit.test.ts' | sort | sed -E 's#^(.*)\.ts$#dist/\1.js#')
exec node --test --test-concurrency="$(nproc)" "$@" "${files[@]}"
