/**
 * The whole GPU model against PyTorch (float64): logits, loss, every parameter gradient, and 10 AdamW steps
 * through the real Trainer, on the tiny-random-gpt2 fixture. Worst errors are printed for the record.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { createKernels, type Kernels } from "../../src/gpu/kernels/index.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { type Batch, DecoderModel } from "../../src/model/decoder.ts";
import { tensorView } from "../../src/model/params.ts";
import type { BatchSource } from "../../src/train/batches.ts";
import { Trainer } from "../../src/train/trainer.ts";
import { loadReferenceFixture, type ReferenceFixture } from "../fixtures/reference.ts";
import { relativeError } from "../helpers/numeric.ts";

let gpu: Gpu;
let kernels: Kernels;
let fx: ReferenceFixture;
let batch: Batch;

beforeAll(async () => {
  gpu = await acquireGpu();
  kernels = await createKernels(gpu);
  fx = await loadReferenceFixture();
  batch = { tokens: fx.tokens, targets: fx.targets, weights: Float32Array.from(fx.weights), B: fx.B, T: fx.T };
});
afterAll(() => gpu?.destroy());

function newModel(): DecoderModel {
  const model = new DecoderModel(gpu, kernels, fx.model.config, { B: fx.B, T: fx.T, training: true });
  model.setParameters(fx.model.params);
  return model;
}

test("logits and loss match PyTorch within 1e-4 relative", async () => {
  const model = newModel();
  const r = new Recorder(gpu);
  model.setBatch(batch);
  model.forward(r, 0);
  r.submit();
  const logitsError = relativeError(await model.readLogits(), fx.logits);
  const losses = await model.readLosses();
  const loss = losses.reduce((a, b) => a + b, 0) / fx.weights.reduce((a, b) => a + b, 0);
  const lossError = Math.abs(loss - fx.loss) / Math.abs(fx.loss);
  console.log(`vs PyTorch: logits rel err ${logitsError.toExponential(2)}, loss rel err ${lossError.toExponential(2)} (loss ${loss})`);
  expect(logitsError).toBeLessThan(1e-4);
  expect(lossError).toBeLessThan(1e-4);
  model.destroy();
});

test("every parameter gradient matches PyTorch within 1e-3 (max abs / max |ref|)", async () => {
  const model = newModel();
  const r = new Recorder(gpu);
  model.zeroGradients(r);
  model.setBatch(batch);
  model.forward(r, 1 / fx.weights.reduce((a, b) => a + b, 0));
  model.backward(r);
  r.submit();
  const grads = await model.getGradients();
  let worst = { name: "", error: 0 };
  expect(fx.grads.size).toBe(model.layout.tensors.length);
  for (const spec of model.layout.tensors) {
    const expected = fx.grads.get(spec.name);
    if (!expected) throw new Error(`fixture lacks the gradient of ${spec.name}`);
    const error = relativeError(tensorView(grads, spec), expected);
    if (error > worst.error) worst = { name: spec.name, error };
    expect({ name: spec.name, ok: error < 1e-3 }).toEqual({ name: spec.name, ok: true });
  }
  console.log(`vs PyTorch: worst gradient rel err ${worst.error.toExponential(2)} (${worst.name})`);
  model.destroy();
});

test("10 AdamW steps through the Trainer follow PyTorch's losses and gradient norms", async () => {
  const model = newModel();
  const fixed: BatchSource = { B: fx.B, T: fx.T, next: () => batch, state: () => null, restore: () => {} };
  const o = fx.adamw;
  const trainer = new Trainer(gpu, model, fixed, {
    lr: o.lr, warmupSteps: 0, minLrRatio: 1, weightDecay: o.weightDecay, beta1: o.beta1, beta2: o.beta2, eps: o.eps,
    gradClip: o.maxGradNorm, gradAccum: 1,
  }, o.steps, 0);
  let worstLoss = 0;
  let worstNorm = 0;
  for (let i = 0; i < o.steps; i++) {
    const m = await trainer.trainStep();
    worstLoss = Math.max(worstLoss, Math.abs(m.loss - fx.stepLosses[i]) / fx.stepLosses[i]);
    worstNorm = Math.max(worstNorm, Math.abs(m.grad_norm - fx.gradNorms[i]) / fx.gradNorms[i]);
  }
  console.log(`vs PyTorch over ${o.steps} AdamW steps: worst loss rel err ${worstLoss.toExponential(2)}, worst grad-norm rel err ${worstNorm.toExponential(2)}`);
  expect(fx.stepLosses[o.steps - 1]).toBeLessThan(fx.stepLosses[0]); // the fixture really trains
  expect(worstLoss).toBeLessThan(1e-4);
  expect(worstNorm).toBeLessThan(1e-3);
  model.destroy();
});
