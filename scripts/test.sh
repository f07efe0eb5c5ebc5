#!/usr/bin/env bash
# The project's test command (README, CI): runs `bun test` with the software Vulkan adapter visible, and prints
# the closing line "N passed, N failed" that CI reads (bun's own summary is not in that form).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-env.sh
log=$(mktemp)
node_modules/.bin/bun test --timeout "${COT_DISTILL_TEST_TIMEOUT_MS:-600000}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
pass=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -1 | grep -Eo '[0-9]+'); pass=${pass:-0}
fail=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -1 | grep -Eo '[0-9]+'); fail=${fail:-0}
skip=$(grep -Eo '^ *[0-9]+ skip$' "$log" | tail -1 | grep -Eo '[0-9]+'); skip=${skip:-0}
rm -f "$log"
# a crash (non-zero exit) with no failing test counted still counts as a failure
if [ "$status" != 0 ] && [ "$fail" = 0 ]; then fail=1; fi
echo "${pass} passed, ${fail} failed, ${skip} skipped"
exit "$status"
