/**
 * Training throughput: tokens/s and the GPU memory the trainer allocates, for a GPT-2 preset's sizes on the adapter
 * present, the same sizes as another family (--family llama: RMSNorm, rotary, SwiGLU, kv heads = heads/2; …), or
 * any HF config.json (--hf-config). Defaults: a small config on a software adapter (4 layers, 128 wide, vocab
 * 2048, T=128, B=4), GPT-2 124M (B=8, T=1024) on a real GPU.
 *
 * Then, back to back in the same run, PyTorch on the same config, B, T and step (bench/pytorch_baseline.py: fp32
 * eager, TF32 off, AdamW with the Trainer's settings, grad clip 1.0; CUDA when the machine has it, else the CPU with
 * every core), and the ratio ours / PyTorch. The load average before and after is printed: on a shared machine
 * only the ratio of two figures measured together means anything. Prints figures; never fails on speed.
 *
 *   bun bench/train.ts [--preset NAME | --hf-config FILE] [--family gpt2|llama|qwen2|qwen3|gemma|gemma2|phi]
 *                      [--B n] [--T n] [--steps n] [--no-torch] [--profile] [--json]
 *     --no-torch   skip the PyTorch run (PYTHON picks the interpreter; default /usr/bin/python3 when present)
 *     --profile    also replay one step's dispatches one by one and print GPU time per kernel (timestamp-query)
 *   COT_DISTILL_MATMUL=tiled|register forces a matmul kernel family (default: chosen per adapter).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { acquireGpu, describeGpu } from "../src/gpu/device.ts";
import { createKernels } from "../src/gpu/kernels/index.ts";
import { presetConfig } from "../src/model/config.ts";
import { configFromHF, type ModelConfig } from "../src/model/family.ts";
import { DecoderModel } from "../src/model/decoder.ts";
import { initParams } from "../src/model/init.ts";
import { TokenStreamSource } from "../src/train/batches.ts";
import { DEFAULT_OPTIMIZER, Trainer } from "../src/train/trainer.ts";
import { profileDispatches } from "./gpu-timer.ts";

const { values } = parseArgs({
  options: {
    preset: { type: "string" }, family: { type: "string" }, "hf-config": { type: "string" }, B: { type: "string" }, T: { type: "string" },
    steps: { type: "string" }, json: { type: "boolean" }, profile: { type: "boolean" }, "no-torch": { type: "boolean" },
  },
});

type HFConfig = Record<string, unknown>;

/** A GPT-2 preset's sizes as an HF config of a family (gated MLPs get ≈ 8/3·C per branch, as Llama sizes them). */
function hfConfigOf(gpt2: ModelConfig, family: string): HFConfig {
  const C = gpt2.nEmbd;
  if (family === "gpt2") {
    return { model_type: "gpt2", n_layer: gpt2.nLayer, n_head: gpt2.nHead, n_embd: C, vocab_size: gpt2.vocabSize, n_positions: gpt2.nPositions, layer_norm_epsilon: gpt2.layerNormEps };
  }
  const gated = family !== "phi";
  return {
    model_type: family, hidden_size: C, num_hidden_layers: gpt2.nLayer, num_attention_heads: gpt2.nHead,
    num_key_value_heads: family === "phi" ? gpt2.nHead : Math.max(1, gpt2.nHead / 2), vocab_size: gpt2.vocabSize,
    intermediate_size: gated ? Math.round((8 * C) / 3 / 32) * 32 : 4 * C, max_position_embeddings: gpt2.nPositions,
    head_dim: C / gpt2.nHead, tie_word_embeddings: family.startsWith("gemma") || family === "qwen2",
    ...(family === "gemma2" ? { attn_logit_softcapping: 50, final_logit_softcapping: 30, query_pre_attn_scalar: C / gpt2.nHead } : {}),
  };
}

const gpu = await acquireGpu();
const software = gpu.adapter.isSoftware;
const hf: HFConfig = values["hf-config"]
  ? JSON.parse(readFileSync(values["hf-config"], "utf8"))
  : hfConfigOf(presetConfig(values.preset ?? (software ? "tiny" : "gpt2")), values.family ?? "gpt2");
const config = configFromHF(hf, values["hf-config"] ?? `--family ${values.family ?? "gpt2"}`);
const B = Number(values.B ?? (software ? 4 : 8));
const T = Number(values.T ?? (software ? 128 : 1024));
const steps = Number(values.steps ?? (software ? 4 : 20));
const load = [loadavg()[0]];
const kernels = await createKernels(gpu);
const model = new DecoderModel(gpu, kernels, config, { B, T, training: true });
model.setParameters(initParams(model.layout, 1));
const stream = new Uint32Array(B * T * 8).map((_, i) => (i * 7919) % config.vocabSize);
const trainer = new Trainer(gpu, model, new TokenStreamSource(stream, B, T), { ...DEFAULT_OPTIMIZER, lr: 1e-4 }, steps + 3, 1);
await trainer.trainStep(); // warm-up: pipelines, bind groups
let tokens = 0;
const started = performance.now();
for (let i = 0; i < steps; i++) tokens += (await trainer.trainStep()).tokens;
const seconds = (performance.now() - started) / 1000;
const ours = {
  adapter: describeGpu(gpu),
  matmul: kernels.matmul.variant,
  config: `${config.family}: ${config.nLayer} layers, ${config.nEmbd} wide, ${config.nHead} heads (${config.nKVHead} kv), vocab ${config.vocabSize}`,
  B, T, steps,
  tokens_per_s: Math.round(tokens / seconds),
  ms_per_step: Math.round((seconds * 1000) / steps),
  gpu_memory_mib: Math.round(model.allocatedBytes / 2 ** 20),
};

let profile: { label: string; calls: number; ms: number }[] | undefined;
if (values.profile) profile = await profileDispatches(gpu, () => trainer.trainStep());
model.destroy();
gpu.destroy();

interface TorchResult { bench: string; device: string; threads: number; tokens_per_s: number; ms_per_step: number; peak_memory_mib: number | null }

/** The same config, B, T and steps through bench/pytorch_baseline.py, or why it could not run. */
function runTorch(): TorchResult | { error: string } {
  const python = process.env.PYTHON ?? (existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
  const dir = mkdtempSync(join(tmpdir(), "bench-train-"));
  try {
    const sizes = config.family === "gpt2" && !values["hf-config"]
      ? ["--n-layer", config.nLayer, "--n-head", config.nHead, "--n-embd", config.nEmbd, "--vocab", config.vocabSize].map(String)
      : (writeFileSync(join(dir, "config.json"), JSON.stringify(hf)), ["--hf-config", join(dir, "config.json")]);
    const args = [join(import.meta.dir, "pytorch_baseline.py"), "train", "--B", String(B), "--T", String(T), "--steps", String(steps), ...sizes];
    if (software) args.push("--device", "cpu"); // the software adapter runs on the CPU: compare with PyTorch there
    const run = spawnSync(python, args, { encoding: "utf8", timeout: 30 * 60_000 });
    const line = run.stdout?.trim().split("\n").at(-1);
    if (run.status !== 0 || !line) return { error: `${python} ${args.slice(0, 2).join(" ")} failed: ${(run.stderr || run.error?.message || "").trim().split("\n").at(-1)}` };
    return JSON.parse(line);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const torch = values["no-torch"] ? undefined : runTorch();
load.push(loadavg()[0]);
const ratio = torch && "tokens_per_s" in torch ? ours.tokens_per_s / torch.tokens_per_s : undefined;
const result = { ...ours, torch, ratio_to_torch: ratio === undefined ? undefined : Number(ratio.toFixed(3)), load_average: load, profile };
if (values.json) console.log(JSON.stringify(result));
else {
  console.log(`adapter        ${ours.adapter} (matmul: ${ours.matmul})`);
  console.log(`model          ${ours.config}  (B=${B}, T=${T})`);
  console.log(`throughput     ${ours.tokens_per_s} tokens/s   (${ours.ms_per_step} ms/step over ${steps} steps)`);
  console.log(`GPU memory     ${ours.gpu_memory_mib} MiB allocated by the trainer (weights, grads, AdamW, activations)`);
  if (torch && "error" in torch) console.log(`PyTorch        not measured: ${torch.error}`);
  else if (torch) {
    const memory = torch.peak_memory_mib === null ? "" : `, ${Math.round(torch.peak_memory_mib)} MiB peak`;
    console.log(`PyTorch        ${Math.round(torch.tokens_per_s)} tokens/s   (${Math.round(torch.ms_per_step)} ms/step; ${torch.bench}, ${torch.device}${torch.device === "cpu" ? `, ${torch.threads} threads` : ""}${memory})`);
    console.log(`ratio          ${ratio!.toFixed(2)}× PyTorch (same config, same run)`);
  }
  console.log(`load average   ${load.map((l) => l.toFixed(1)).join(" → ")} (1-minute, before → after; ${navigator.hardwareConcurrency} cores)`);
  if (profile) {
    const total = profile.reduce((t, row) => t + row.ms, 0);
    console.log(`profile        one step's dispatches replayed alone: ${total.toFixed(1)} ms of GPU time in ${profile.reduce((n, row) => n + row.calls, 0)} dispatches`);
    for (const row of profile) console.log(`  ${row.ms.toFixed(2).padStart(9)} ms ${((100 * row.ms) / total).toFixed(1).padStart(5)}%  ${String(row.calls).padStart(4)}×  ${row.label}`);
  }
}
