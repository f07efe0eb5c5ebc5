/**
 * The trainer without per-step waits: a pipelined run (steps submitted back to back, metrics read a step late)
 * equals one that waits on every step, bit for bit; the GPU's loss sum matches the CPU's; a divergence is still
 * reported, with the weights and AdamW moments as they were before the bad step (the steps already in flight behind
 * it skipped too); and after the first step nothing — bind group, buffer, pipeline — is created per step.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { acquireGpu } from "../../src/gpu/device.ts";
import { createKernels } from "../../src/gpu/kernels/index.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { gpt2Config } from "../../src/model/config.ts";
import { type Batch, DecoderModel } from "../../src/model/decoder.ts";
import { configFromHF, type ModelConfig } from "../../src/model/family.ts";
import { initParams } from "../../src/model/init.ts";
import { Rng } from "../../src/model/rng.ts";
import { type BatchSource, TokenStreamSource } from "../../src/train/batches.ts";
import type { StepMetrics } from "../../src/train/metrics.ts";
import { DEFAULT_OPTIMIZER, Trainer, TrainingDiverged } from "../../src/train/trainer.ts";
import { PROJECT_ROOT } from "../helpers/cli.ts";

const gpu = await acquireGpu();
const kernels = await createKernels(gpu);
afterAll(() => gpu.destroy());

const gpt2 = gpt2Config({ nLayer: 2, nHead: 2, nEmbd: 32, vocabSize: 23, nPositions: 16, layerNormEps: 1e-5 });
const stream = Uint32Array.from({ length: 600 }, (_, i) => (i % 7 === 0 ? 22 : (i * 3) % 11));
const OPTIMIZER = { ...DEFAULT_OPTIMIZER, lr: 3e-3, warmupSteps: 2, gradAccum: 2 };

function newTrainer(config: ModelConfig, source: BatchSource, steps = 6) {
  const model = new DecoderModel(gpu, kernels, config, { B: source.B, T: source.T, training: true });
  model.setParameters(initParams(model.layout, 3));
  const trainer = new Trainer(gpu, model, source, OPTIMIZER, steps, 5);
  const delivered: StepMetrics[] = [];
  trainer.onMetrics = (m) => delivered.push(m);
  return { model, trainer, delivered };
}

const comparable = (ms: StepMetrics[]) => ms.map((m) => [m.step, m.loss, m.grad_norm, m.lr, m.tokens]);
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test("pipelined steps give the metrics and weights of waited-for steps, bit for bit; the loss sum matches the CPU's", async () => {
  const waited = newTrainer(gpt2, new TokenStreamSource(stream, 4, 16));
  for (let i = 0; i < 6; i++) await waited.trainer.trainStep();
  const piped = newTrainer(gpt2, new TokenStreamSource(stream, 4, 16));
  for (let i = 0; i < 6; i++) await piped.trainer.submitStep();
  await piped.trainer.flush();
  expect(piped.delivered.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(comparable(piped.delivered)).toEqual(comparable(waited.delivered));
  expect(bits(await piped.model.getParameters()).equals(bits(await waited.model.getParameters()))).toBe(true);
  for (const m of piped.delivered) expect(m.tokens_per_s).toBeGreaterThan(0);

  // step 1's loss from the per-position losses read back and summed in float64 on the CPU
  const check = newTrainer(gpt2, new TokenStreamSource(stream, 4, 16));
  const rng = new Rng(5);
  const batches = [0, 1].map(() => check.trainer.source.next(rng));
  const r = new Recorder(gpu);
  let lossSum = 0;
  let weightSum = 0;
  for (const b of batches) {
    check.model.setBatch(b);
    check.model.forward(r, 0);
    r.submit();
    for (const l of await check.model.readLosses()) lossSum += l;
    for (const w of b.weights) weightSum += w;
  }
  expect(Math.abs(piped.delivered[0].loss - lossSum / weightSum) / (lossSum / weightSum)).toBeLessThan(1e-6);
  for (const t of [waited, piped, check]) t.model.destroy();
});

/** The token stream's batches, with one loss weight made NaN in draw `poisoned` (1-based). */
function poisonedSource(poisoned: number): BatchSource {
  const inner = new TokenStreamSource(stream, 4, 16);
  let draws = 0;
  return {
    B: inner.B, T: inner.T, state: () => null, restore: () => {},
    next(rng: Rng): Batch {
      const batch = inner.next(rng);
      if (++draws === poisoned) batch.weights[3] = Number.NaN;
      return batch;
    },
  };
}

test("a NaN in step 3 is reported a step late with the weights and moments of step 2; later steps in flight skipped too", async () => {
  const reference = newTrainer(gpt2, new TokenStreamSource(stream, 4, 16));
  for (let i = 0; i < 2; i++) await reference.trainer.trainStep();
  // gradAccum 2: draws 5 and 6 make step 3
  const bad = newTrainer(gpt2, poisonedSource(6));
  let error: unknown;
  try {
    for (let i = 0; i < 6; i++) await bad.trainer.submitStep();
    await bad.trainer.flush();
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(TrainingDiverged);
  expect((error as Error).message).toMatch(/^step 3: loss is NaN; stopped before updating the weights/);
  expect(bad.trainer.step).toBeGreaterThanOrEqual(3); // submitted past the bad step before its status arrived
  expect(bad.delivered.map((m) => m.step)).toEqual([1, 2]);
  expect(bits(await bad.model.getParameters()).equals(bits(await reference.model.getParameters()))).toBe(true);
  const [got, want] = [await bad.model.getOptimizerState(), await reference.model.getOptimizerState()];
  expect(bits(got.m).equals(bits(want.m)) && bits(got.v).equals(bits(want.v))).toBe(true);
  // the trainer stays failed: no later call trains on
  expect(bad.trainer.submitStep()).rejects.toBeInstanceOf(TrainingDiverged);
  // a new trainer on the same model clears the sticky flag and trains again
  const again = new Trainer(gpu, bad.model, new TokenStreamSource(stream, 4, 16), OPTIMIZER, 6, 5);
  expect(Number.isFinite((await again.trainStep()).loss)).toBe(true);
  for (const t of [reference, bad]) t.model.destroy();
});

/** Counts the device's object creations while `body` runs. */
async function creations(body: () => Promise<void>): Promise<Record<string, number>> {
  const device = gpu.device as unknown as Record<string, (...args: unknown[]) => unknown>;
  const names = ["createBindGroup", "createBuffer", "createComputePipeline", "createComputePipelineAsync", "createShaderModule", "createBindGroupLayout"];
  const counts: Record<string, number> = Object.fromEntries(names.map((n) => [n, 0]));
  const originals = names.map((n) => device[n]);
  names.forEach((n, i) => {
    device[n] = function (this: unknown, ...args: unknown[]) {
      counts[n]++;
      return originals[i].apply(gpu.device, args);
    };
  });
  try {
    await body();
  } finally {
    names.forEach((n, i) => (device[n] = originals[i]));
  }
  return counts;
}

const gemma2 = configFromHF({ ...JSON.parse(readFileSync(join(PROJECT_ROOT, "test/fixtures/families/gemma2/config.json"), "utf8")), vocab_size: 23 });

test.each([["gpt2", gpt2], ["gemma2", gemma2]] as const)("%s: after the first step, steps create no bind group, buffer or pipeline", async (_, config) => {
  const { model, trainer } = newTrainer(config, new TokenStreamSource(stream, 3, 12), 8);
  let created = 0;
  const first = await creations(() => trainer.trainStep().then(() => {}));
  for (const n of Object.values(first)) created += n;
  expect(created).toBeGreaterThan(0); // the counting works: the first step made its bind groups
  const later = await creations(async () => {
    for (let i = 0; i < 3; i++) await trainer.submitStep();
    await trainer.flush();
  });
  expect(later).toEqual(Object.fromEntries(Object.keys(later).map((n) => [n, 0])));
  model.destroy();
});
