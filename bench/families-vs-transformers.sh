#!/usr/bin/env bash
# On a machine with PyTorch + transformers (a GPU machine): our loss and gradients against transformers' own models
# of every family, from the committed random-config fixtures. Prints a table; see bench/families-vs-transformers.py.
#   bash bench/families-vs-transformers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-env.sh
PY=${PYTHON:-python3}
if ! $PY -c "import transformers, torch" 2>/dev/null; then
  echo "families-vs-transformers: $PY lacks torch or transformers (pip install torch transformers)" >&2
  exit 2
fi
BUN=${BUN:-node_modules/.bin/bun}
command -v "$BUN" >/dev/null 2>&1 || BUN=$(command -v bun)
exec $PY bench/families-vs-transformers.py --bun "$BUN"
