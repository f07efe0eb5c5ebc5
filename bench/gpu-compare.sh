#!/usr/bin/env bash
# Ours vs PyTorch on one machine, in one run, as a table of ratios (issue 10 §5; figures, never pass/fail):
#   matmul      our kernels (bench/matmul.ts) vs torch.matmul fp32 (cuBLAS, TF32 off) at the same square sizes
#   train rows  bench/train.ts, which runs PyTorch fp32 eager (TF32 off, same config, B, T and AdamW step) right
#               after ours: GPT-2 124M (B=8, T=1024); a Qwen2-0.5B-shaped config (its HF config.json written here);
#               the families at GPT-2 124M's sizes (FAMILIES, default "llama gemma2"); LoRA rows once bench/train.ts
#               takes LoRA flags (the marked hook below).
# Goals: training >= 1.0x PyTorch; matmul >= 0.9x cuBLAS.
#
#   bash bench/gpu-compare.sh            on a GPU machine (there: `source .gpu-bundle/on-device.sh` first, see
#                                        /work/shared/gpu/README.md; its python3 has CUDA PyTorch + transformers)
#   bash bench/gpu-compare.sh --cpu      the same plumbing at tiny sizes on the software adapter and the CPU (a
#                                        minute or two; PyTorch rows of non-GPT-2 families need transformers)
# Env: PYTHON (default /usr/bin/python3 when present, else python3), STEPS, FAMILIES, OUT (keep the JSON there).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/gpu-env.sh
CPU=0
[ "${1:-}" = "--cpu" ] && CPU=1
if [ -z "${PYTHON:-}" ]; then PYTHON=python3; [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3; fi
export PYTHON
BUN=node_modules/.bin/bun
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); results in $out"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

if [ "$CPU" = 1 ]; then
  steps=${STEPS:-2}
  qwen=(hidden_size 64 intermediate_size 160 num_hidden_layers 2 num_attention_heads 4 num_key_value_heads 2 vocab_size 512)
  gpt2=(--preset micro --B 2 --T 64); shape=(--B 2 --T 64); matmul=(--shapes tiny --budget 1); sizes=256
else
  steps=${STEPS:-10}
  # Qwen/Qwen2-0.5B's config.json (sizes and settings; weights random)
  qwen=(hidden_size 896 intermediate_size 4864 num_hidden_layers 24 num_attention_heads 14 num_key_value_heads 2 vocab_size 151936)
  gpt2=(--preset gpt2 --B 8 --T 1024); shape=(--B 8 --T 1024); matmul=(--shapes gpt2); sizes=512,1024,2048,4096
fi
$PYTHON - "$out/qwen2-config.json" "${qwen[@]}" <<'PY'
import json, sys
path, kv = sys.argv[1], sys.argv[2:]
cfg = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "max_position_embeddings": 32768,
       "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "hidden_act": "silu", "tie_word_embeddings": True,
       "use_sliding_window": False, "torch_dtype": "float32"}
cfg.update({k: int(v) for k, v in zip(kv[::2], kv[1::2])})
json.dump(cfg, open(path, "w"), indent=1)
PY

# name|arguments of bench/train.ts; each row is one bench/train.ts run (ours, then PyTorch, back to back)
rows=("gpt2|${gpt2[*]}" "qwen2-0.5b-shaped|--hf-config $out/qwen2-config.json ${shape[*]}")
for family in ${FAMILIES:-llama gemma2}; do rows+=("$family (gpt2 sizes)|${gpt2[*]} --family $family"); done
# HOOK(lora): LoRA rows join here once bench/train.ts takes --lora-rank (the flag exists in src/distill/run-spec.ts;
# bench/train.ts and bench/pytorch_baseline.py do not take it yet), detected by name.
if grep -q '"lora-rank"' bench/train.ts; then rows+=("gpt2 + LoRA r8|${gpt2[*]} --lora-rank 8" "qwen2-0.5b + LoRA r8|--hf-config $out/qwen2-config.json ${shape[*]} --lora-rank 8"); fi

"$BUN" bench/matmul.ts --json "${matmul[@]}" > "$out/matmul.json" 2> "$out/matmul.err" || echo "our matmul bench failed: $(tail -1 "$out/matmul.err")"
$PYTHON bench/pytorch_baseline.py matmul --sizes "$sizes" $([ "$CPU" = 1 ] && echo --device cpu) > "$out/torch-matmul.jsonl" 2> "$out/torch-matmul.err" || echo "torch matmul failed: $(tail -1 "$out/torch-matmul.err")"
i=0
for row in "${rows[@]}"; do
  i=$((i + 1))
  # shellcheck disable=SC2086 # the arguments are word-split on purpose
  "$BUN" bench/train.ts --json --steps "$steps" ${row#*|} > "$out/train-$i.json" 2> "$out/train-$i.err" \
    || echo "{\"error\": $(tail -1 "$out/train-$i.err" | "$BUN" -e 'console.log(JSON.stringify(require("fs").readFileSync(0, "utf8").trim()))')}" > "$out/train-$i.json"
done

printf '%s\n' "${rows[@]}" > "$out/rows.txt"
"$BUN" -e '
const fs = require("fs");
const dir = process.argv[1];
const lines = (f) => (fs.existsSync(`${dir}/${f}`) ? fs.readFileSync(`${dir}/${f}`, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l)) : []);
const table = (head, rows) => {
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => String(r[c]).length)));
  for (const r of [head, widths.map((w) => "-".repeat(w)), ...rows]) console.log(r.map((v, c) => String(v).padEnd(widths[c])).join("  "));
};
const [ours] = lines("matmul.json");
if (ours) console.log(`\nadapter: ${ours.adapter}`);
const mm = lines("torch-matmul.jsonl").map((t) => {
  const mine = ours?.results.find((r) => r.M === t.n && r.N === t.n && r.K === t.n && r.gflops);
  return [`matmul ${t.n}³`, mine ? (mine.gflops / 1000).toFixed(3) : "-", t.tflops.toFixed(3), mine ? `${(mine.gflops / 1000 / t.tflops).toFixed(2)}x` : "-"];
});
if (mm.length) { console.log(); table(["product", "ours TFLOP/s", "torch TFLOP/s", "ratio"], mm); }
const names = fs.readFileSync(`${dir}/rows.txt`, "utf8").trim().split("\n").map((r) => r.split("|")[0]);
const rows = names.map((name, i) => {
  const [r] = lines(`train-${i + 1}.json`);
  if (!r || r.error) return [name, "-", "-", "-", "-", "-", `ours failed: ${r?.error ?? "no output"}`];
  const t = r.torch ?? {};
  const mem = (x) => (x === null || x === undefined ? "-" : Math.round(x));
  return [name, `B=${r.B} T=${r.T}`, r.tokens_per_s, t.tokens_per_s ? Math.round(t.tokens_per_s) : "-", r.ratio_to_torch ? `${r.ratio_to_torch.toFixed(2)}x` : "-",
    `${r.gpu_memory_mib} / ${mem(t.peak_memory_mib)}`, t.error ? `torch: ${t.error}` : `${r.matmul} matmul; load ${r.load_average.map((l) => l.toFixed(1)).join("→")}`];
});
console.log();
table(["train", "batch", "ours tok/s", "torch tok/s", "ratio", "MiB ours / torch", "notes"], rows);
' "$out"
