/**
 * The splitting paths on a small model: tiny-random-gpt2 (V = 1000, C = 32, tied head, B·T = 32) with kernels told
 * to bind at most 64 KiB, so the token embedding (125 KiB; its forward, its backward and the tied head's weight
 * and gradient) is bound in two vocabulary ranges of 512 and 488 rows, the head runs the weighted positions in
 * chunks of 16 rows, and AdamW and the gradient norm walk the parameters in 64 KiB chunks. Everything must still
 * match PyTorch's float64 fixture as the unsplit model does (1e-5 relative), and agree with the unsplit model;
 * and no bind group the split model creates may bind more than the limit.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { headVocabChunks, headWorkspaceFloats } from "../../src/gpu/kernels/crossentropy.ts";
import { createKernels, type Kernels } from "../../src/gpu/kernels/index.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { DecoderModel } from "../../src/model/decoder.ts";
import { tensorView } from "../../src/model/params.ts";
import { memoryPlan, overruns } from "../../src/model/memory.ts";
import { fixtureBatch, fixtureTrainer, loadReferenceFixture, type ReferenceFixture } from "../fixtures/reference.ts";
import { relativeError } from "../helpers/numeric.ts";

const LIMIT = 64 << 10;
const TOLERANCE = 1e-5;

let gpu: Gpu;
let split: Kernels;
let whole: Kernels;
let fx: ReferenceFixture;
/** The largest storage binding of any bind group created while `watching` (the device's createBindGroup, wrapped). */
let watching = false;
let largestBinding = 0;
beforeAll(async () => {
  gpu = await acquireGpu();
  const device = gpu.device;
  const create = device.createBindGroup.bind(device);
  device.createBindGroup = (descriptor: GPUBindGroupDescriptor) => {
    if (watching) {
      for (const entry of descriptor.entries) {
        const b = entry.resource as GPUBufferBinding;
        largestBinding = Math.max(largestBinding, b.size ?? b.buffer.size - (b.offset ?? 0));
      }
    }
    return create(descriptor);
  };
  split = await createKernels(gpu, undefined, { maxBindingBytes: LIMIT });
  whole = await createKernels(gpu);
  fx = await loadReferenceFixture();
});
afterAll(() => gpu?.destroy());


function newModel(kernels: Kernels): DecoderModel {
  const model = new DecoderModel(gpu, kernels, fx.model.config, { B: fx.B, T: fx.T, training: true });
  model.setParameters(fx.model.params);
  return model;
}

async function lossAndGradients(model: DecoderModel) {
  const r = new Recorder(gpu);
  model.setBatch(fixtureBatch(fx));
  model.forward(r, 0);
  r.submit();
  const logits = await model.readLogits();
  const weightSum = fx.weights.reduce((a, b) => a + b, 0);
  const loss = (await model.readLosses()).reduce((a, b) => a + b, 0) / weightSum;
  model.zeroGradients(r);
  model.forward(r, 1 / weightSum);
  model.backward(r);
  r.submit();
  return { logits, loss, grads: await model.getGradients() };
}

test("the plan really splits: vocabulary ranges, head row chunks, and every planned binding within the limit", () => {
  const { vocabSize: V, nEmbd: C } = fx.model.config;
  expect(V * C * 4).toBeGreaterThan(LIMIT);
  expect(headVocabChunks(V, C, LIMIT)).toEqual([{ first: 0, count: 512 }, { first: 512, count: 488 }]);
  const weighted = fx.weights.filter((w) => w !== 0).length;
  expect(headWorkspaceFloats(fx.B * fx.T, V, C, true, LIMIT).rowChunk).toBeLessThan(weighted);
  const plan = memoryPlan(fx.model.config, { B: fx.B, T: fx.T, training: true, maxBindingBytes: LIMIT });
  expect(overruns(plan, { maxBufferSize: 1 << 30, maxStorageBufferBindingSize: LIMIT })).toEqual([]);
});

test("split bindings: logits, loss and every gradient match PyTorch and the unsplit model", async () => {
  const a = newModel(split);
  const b = newModel(whole);
  watching = true;
  const got = await lossAndGradients(a);
  watching = false;
  const ref = await lossAndGradients(b);
  expect(largestBinding).toBeGreaterThan(0);
  expect(largestBinding).toBeLessThanOrEqual(LIMIT);
  expect(relativeError(got.logits, fx.logits)).toBeLessThan(TOLERANCE);
  expect(Math.abs(got.loss - fx.loss) / fx.loss).toBeLessThan(TOLERANCE);
  let worst = 0;
  let worstVsUnsplit = 0;
  for (const spec of a.layout.tensors) {
    worst = Math.max(worst, relativeError(tensorView(got.grads, spec), fx.grads.get(spec.name)!));
    worstVsUnsplit = Math.max(worstVsUnsplit, relativeError(tensorView(got.grads, spec), tensorView(ref.grads, spec)));
  }
  console.log(`64 KiB bindings: worst gradient vs PyTorch ${worst.toExponential(2)}, vs the unsplit model ${worstVsUnsplit.toExponential(2)}`);
  expect(worst).toBeLessThan(TOLERANCE);
  expect(worstVsUnsplit).toBeLessThan(1e-6);
  a.destroy();
  b.destroy();
});

test("split bindings: 10 AdamW steps follow PyTorch's losses and gradient norms", async () => {
  const model = newModel(split);
  const o = fx.adamw;
  const trainer = fixtureTrainer(gpu, model, fx);
  watching = true;
  for (let i = 0; i < o.steps; i++) {
    const m = await trainer.trainStep();
    expect(largestBinding).toBeLessThanOrEqual(LIMIT); // AdamW and the gradient norm too
    expect(Math.abs(m.loss - fx.stepLosses[i]) / fx.stepLosses[i]).toBeLessThan(TOLERANCE);
    expect(Math.abs(m.grad_norm - fx.gradNorms[i]) / fx.gradNorms[i]).toBeLessThan(TOLERANCE);
  }
  model.destroy();
});
