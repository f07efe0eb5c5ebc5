#!/usr/bin/env bash
# On a GPU machine: our matmul and GPT-2 training benchmarks and their PyTorch baselines in one run, with ratios.
# Targets (issue 2): training >= 1.0x PyTorch fp32 eager tokens/s; matmul >= 0.9x cuBLAS fp32.
#   bash bench/gpu-compare.sh            (on the device: source .gpu-bundle/on-device.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-env.sh
PY=${PYTHON:-python3}
out=$(mktemp -d)
node_modules/.bin/bun bench/matmul.ts --json > "$out/matmul.json"
$PY bench/pytorch_baseline.py matmul > "$out/torch-matmul.jsonl"
node_modules/.bin/bun bench/train.ts --json --preset gpt2 --B 8 --T 1024 --steps 10 > "$out/train.json"
$PY bench/pytorch_baseline.py train --B 8 --T 1024 --steps 10 > "$out/torch-train.json"
node_modules/.bin/bun -e '
const dir = process.argv[1];
const read = (f) => require("fs").readFileSync(`${dir}/${f}`, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const [ours] = read("matmul.json");
const torch = read("torch-matmul.jsonl");
console.log(`adapter: ${ours.adapter}`);
for (const t of torch) {
  const mine = ours.results.find((r) => r.M === t.n && r.N === t.n && r.K === t.n && r.gflops);
  if (mine) console.log(`matmul ${t.n}: ours ${(mine.gflops / 1000).toFixed(2)} TFLOP/s, cuBLAS ${t.tflops.toFixed(2)} -> ${(mine.gflops / 1000 / t.tflops).toFixed(2)}x`);
}
const [train] = read("train.json");
const [ttrain] = read("torch-train.json");
console.log(`train GPT-2 124M B=8 T=1024: ours ${train.tokens_per_s} tok/s (${train.gpu_memory_mib} MiB), PyTorch ${Math.round(ttrain.tokens_per_s)} tok/s (${Math.round(ttrain.peak_memory_mib)} MiB peak) -> ${(train.tokens_per_s / ttrain.tokens_per_s).toFixed(2)}x`);
' "$out"
