#!/usr/bin/env bash
# Runs the benchmarks (figures, never pass/fail) with the software adapter visible. Arguments: bench names
# (matmul, train, decode, predict, teacher, teacher-core, http-front); none = all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-env.sh
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(matmul train decode predict teacher teacher-core http-front)
for name in "${benches[@]}"; do
  echo "== bench/$name.ts"
  node_modules/.bin/bun "bench/$name.ts"
done
