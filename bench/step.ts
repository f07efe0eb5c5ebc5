/**
 * What the step-time work buys, measured in one run: each residual add and the norm after it as one kernel (fused)
 * or as two (the add, then the norm: what the decoder ran before), and steps submitted back to back with their
 * metrics read a step late (pipelined) or waited for one by one (trainStep). Variants alternate round by round on
 * the same model sizes and data, so a loaded machine slows them alike; the ratios are the figures to read.
 *
 *   bun bench/step.ts [--preset micro] [--family gpt2|llama|…] [--B 4] [--T 64] [--steps 3] [--rounds 3] [--json]
 */
import { parseArgs } from "node:util";
import { acquireGpu, describeGpu } from "../src/gpu/device.ts";
import { createKernels, denseView, type Kernels } from "../src/gpu/kernels/index.ts";
import { presetConfig } from "../src/model/config.ts";
import { configFromHF } from "../src/model/family.ts";
import { DecoderModel } from "../src/model/decoder.ts";
import { initParams } from "../src/model/init.ts";
import { TokenStreamSource } from "../src/train/batches.ts";
import { DEFAULT_OPTIMIZER, Trainer } from "../src/train/trainer.ts";
import { Recorder } from "../src/gpu/recorder.ts";

const { values } = parseArgs({
  options: { preset: { type: "string" }, family: { type: "string" }, B: { type: "string" }, T: { type: "string" }, steps: { type: "string" }, rounds: { type: "string" }, json: { type: "boolean" } },
});
const gpt2 = presetConfig(values.preset ?? "micro");
const family = values.family ?? "gpt2";
const config = family === "gpt2" ? gpt2 : configFromHF({
  model_type: family, hidden_size: gpt2.nEmbd, num_hidden_layers: gpt2.nLayer, num_attention_heads: gpt2.nHead,
  num_key_value_heads: gpt2.nHead, vocab_size: gpt2.vocabSize, intermediate_size: 4 * gpt2.nEmbd, max_position_embeddings: gpt2.nPositions,
});
const B = Number(values.B ?? 4), T = Number(values.T ?? 64), steps = Number(values.steps ?? 3), rounds = Number(values.rounds ?? 3);

const gpu = await acquireGpu();
const fused = await createKernels(gpu);
/** The same kernels with each fused residual + norm run as the two dispatches it replaced. */
const unfused: Kernels = {
  ...fused,
  layerNorm: {
    ...fused.layerNorm,
    residualForward(r, o) {
      fused.residual.add(r, { out: o.residual, a: o.a, b: o.b, n: o.N * o.C });
      fused.layerNorm.forward(r, { out: o.out, mean: o.mean, rstd: o.rstd, inp: o.residual, weight: o.weight, bias: o.bias, N: o.N, C: o.C, eps: o.eps });
    },
  },
  rmsNorm: {
    ...fused.rmsNorm,
    residualForward(r, o) {
      fused.residual.add(r, { out: o.residual, a: o.a, b: o.b, n: o.N * o.C });
      fused.rmsNorm.forward(r, { out: denseView(o.out, o.C), rstd: o.rstd, inp: denseView(o.residual, o.C), weight: o.weight, N: o.N, C: o.C, eps: o.eps, gainOffset: o.gainOffset });
    },
  },
};
const stream = new Uint32Array(B * T * 8).map((_, i) => (i * 7919) % config.vocabSize);
const variants = [
  { name: "unfused, waited (before)", kernels: unfused, pipelined: false },
  { name: "fused, waited", kernels: fused, pipelined: false },
  { name: "unfused, pipelined", kernels: unfused, pipelined: true },
  { name: "fused, pipelined (now)", kernels: fused, pipelined: true },
].map((v) => {
  const model = new DecoderModel(gpu, v.kernels, config, { B, T, training: true });
  model.setParameters(initParams(model.layout, 1));
  const trainer = new Trainer(gpu, model, new TokenStreamSource(stream, B, T), { ...DEFAULT_OPTIMIZER, lr: 1e-4 }, 1_000_000, 1);
  return { ...v, model, trainer, ms: [] as number[] };
});
// dispatches per step, counted on the warm-up step (pipelines, bind groups)
const dispatch = Recorder.prototype.dispatch;
let dispatches = 0;
Recorder.prototype.dispatch = function (...args: Parameters<typeof dispatch>) {
  dispatches++;
  return dispatch.apply(this, args);
};
const perStep = new Map<string, number>();
for (const v of variants) {
  dispatches = 0;
  await v.trainer.trainStep();
  perStep.set(v.name, dispatches);
}
Recorder.prototype.dispatch = dispatch;
for (let round = 0; round < rounds; round++) {
  for (const v of variants) {
    const started = performance.now();
    if (v.pipelined) {
      for (let i = 0; i < steps; i++) await v.trainer.submitStep();
      await v.trainer.flush();
    } else {
      for (let i = 0; i < steps; i++) await v.trainer.trainStep();
    }
    v.ms.push((performance.now() - started) / steps);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const before = median(variants[0].ms);
const rows = variants.map((v) => ({ variant: v.name, dispatches: perStep.get(v.name)!, ms_per_step: Math.round(median(v.ms)), speedup_vs_before: before / median(v.ms) }));
const summary = { adapter: describeGpu(gpu), config: `${config.family}: ${config.nLayer} layers, ${config.nEmbd} wide`, B, T, steps, rounds, rows };
if (values.json) console.log(JSON.stringify(summary));
else {
  console.log(`${summary.adapter}; ${summary.config}, B=${B}, T=${T}; median of ${rounds} rounds of ${steps} steps`);
  for (const r of rows) console.log(`  ${r.variant.padEnd(26)} ${String(r.dispatches).padStart(5)} dispatches ${String(r.ms_per_step).padStart(7)} ms/step   x${r.speedup_vs_before.toFixed(3)}`);
}
for (const v of variants) v.model.destroy();
gpu.destroy();
