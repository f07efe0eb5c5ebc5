/**
 * Training throughput: tokens/s and the GPU memory the trainer allocates, for a GPT-2 preset's sizes on the adapter
 * present, or the same sizes as another family (--family llama: RMSNorm, rotary, SwiGLU, kv heads = heads/2; …).
 * Defaults: a small config on a software adapter (4 layers, 128 wide, T=128, B=4), GPT-2 124M (B=8, T=1024) on a
 * real GPU. Prints figures; never fails on speed.
 *
 *   bun bench/train.ts [--preset NAME] [--family gpt2|llama|qwen2|qwen3|gemma|gemma2|phi] [--B n] [--T n] [--steps n] [--json]
 */
import { parseArgs } from "node:util";
import { acquireGpu, describeGpu } from "../src/gpu/device.ts";
import { createKernels } from "../src/gpu/kernels/index.ts";
import { presetConfig } from "../src/model/config.ts";
import { configFromHF, type ModelConfig } from "../src/model/family.ts";
import { DecoderModel } from "../src/model/decoder.ts";
import { initParams } from "../src/model/init.ts";
import { TokenStreamSource } from "../src/train/batches.ts";
import { DEFAULT_OPTIMIZER, Trainer } from "../src/train/trainer.ts";

const { values } = parseArgs({
  options: { preset: { type: "string" }, family: { type: "string" }, B: { type: "string" }, T: { type: "string" }, steps: { type: "string" }, json: { type: "boolean" } },
});

/** A GPT-2 preset's sizes as another family's HF config (gated MLPs get ≈ 8/3·C per branch, as Llama sizes them). */
function asFamily(gpt2: ModelConfig, family: string): ModelConfig {
  if (family === "gpt2") return gpt2;
  const C = gpt2.nEmbd;
  const gated = family !== "phi";
  return configFromHF({
    model_type: family, hidden_size: C, num_hidden_layers: gpt2.nLayer, num_attention_heads: gpt2.nHead,
    num_key_value_heads: family === "phi" ? gpt2.nHead : Math.max(1, gpt2.nHead / 2), vocab_size: gpt2.vocabSize,
    intermediate_size: gated ? Math.round((8 * C) / 3 / 32) * 32 : 4 * C, max_position_embeddings: gpt2.nPositions,
    head_dim: C / gpt2.nHead, tie_word_embeddings: family.startsWith("gemma") || family === "qwen2",
    ...(family === "gemma2" ? { attn_logit_softcapping: 50, final_logit_softcapping: 30, query_pre_attn_scalar: C / gpt2.nHead } : {}),
  }, `--family ${family}`);
}
const gpu = await acquireGpu();
const software = gpu.adapter.isSoftware;
const config = asFamily(presetConfig(values.preset ?? (software ? "tiny" : "gpt2")), values.family ?? "gpt2");
const B = Number(values.B ?? (software ? 4 : 8));
const T = Number(values.T ?? (software ? 128 : 1024));
const steps = Number(values.steps ?? (software ? 4 : 20));
const kernels = await createKernels(gpu);
const model = new DecoderModel(gpu, kernels, config, { B, T, training: true });
model.setParameters(initParams(model.layout, 1));
const stream = new Uint32Array(B * T * 8).map((_, i) => (i * 7919) % config.vocabSize);
const trainer = new Trainer(gpu, model, new TokenStreamSource(stream, B, T), { ...DEFAULT_OPTIMIZER, lr: 1e-4 }, steps + 2, 1);
await trainer.trainStep(); // warm-up: pipelines, bind groups
let tokens = 0;
const started = performance.now();
for (let i = 0; i < steps; i++) tokens += (await trainer.trainStep()).tokens;
const seconds = (performance.now() - started) / 1000;
const result = {
  adapter: describeGpu(gpu),
  config: `${config.family}: ${config.nLayer} layers, ${config.nEmbd} wide, ${config.nHead} heads (${config.nKVHead} kv), vocab ${config.vocabSize}`,
  B, T, steps,
  tokens_per_s: Math.round(tokens / seconds),
  ms_per_step: Math.round((seconds * 1000) / steps),
  gpu_memory_mib: Math.round(model.allocatedBytes / 2 ** 20),
};
if (values.json) console.log(JSON.stringify(result));
else {
  console.log(`adapter        ${result.adapter}`);
  console.log(`model          ${result.config}  (B=${B}, T=${T})`);
  console.log(`throughput     ${result.tokens_per_s} tokens/s   (${result.ms_per_step} ms/step over ${steps} steps)`);
  console.log(`GPU memory     ${result.gpu_memory_mib} MiB allocated by the trainer (weights, grads, AdamW, activations)`);
}
model.destroy();
gpu.destroy();
