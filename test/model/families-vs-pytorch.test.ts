/**
 * Every family's GPU model against PyTorch (float64: make_reference.py for tiny-random-gpt2, make_families.py for
 * the others, HF's modeling code in plain torch) on random-weight models with awkward shapes (GQA 6:2 and 4:1, multi-query, head_dim ≠ hidden/heads, partial rotary,
 * Llama 3 rope scaling, vocabularies not a multiple of 64, T = 13): logits, loss and every parameter gradient
 * within 1e-5 relative (max |error| / max |reference| per tensor), and 10 AdamW steps through the real Trainer:
 * the losses, gradient norms and every parameter after them. The models are read by the one loader (hf.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { createKernels, type Kernels } from "../../src/gpu/kernels/index.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { DecoderModel } from "../../src/model/decoder.ts";
import { tensorView } from "../../src/model/params.ts";
import { FIXTURE_FAMILIES, fixtureBatch, fixtureTrainer, loadFamilyFixture, loadReferenceFixture, type ReferenceFixture } from "../fixtures/reference.ts";
import { relativeError } from "../helpers/numeric.ts";

const TOLERANCE = 1e-5;

let gpu: Gpu;
let kernels: Kernels;
beforeAll(async () => {
  gpu = await acquireGpu();
  kernels = await createKernels(gpu);
});
afterAll(() => gpu?.destroy());

function newModel(fx: ReferenceFixture): DecoderModel {
  const model = new DecoderModel(gpu, kernels, fx.model.config, { B: fx.B, T: fx.T, training: true });
  model.setParameters(fx.model.params);
  return model;
}

/** The worst per-tensor relative error of `flat` (in the model's layout) against the fixture's tensors. */
function worstTensor(model: DecoderModel, flat: Float32Array, expected: Map<string, Float64Array>): { name: string; error: number } {
  expect(expected.size).toBe(model.layout.tensors.length);
  let worst = { name: "", error: 0 };
  for (const spec of model.layout.tensors) {
    const want = expected.get(spec.name);
    if (!want) throw new Error(`fixture lacks ${spec.name}`);
    const error = relativeError(tensorView(flat, spec), want);
    if (!(error <= worst.error)) worst = { name: spec.name, error };
  }
  return worst;
}

/**
 * Adam divides each gradient by its own running RMS, so an element whose gradient is at f32 rounding level (an
 * exact invariance such as the key bias of Phi's unrotated dimensions — softmax ignores a constant shift —, or a
 * gradient 10⁻⁶ of its tensor's largest) moves by ~lr per step in any float32 run and by nothing in PyTorch's
 * float64 one. Those elements follow rounding, not the maths, so parameters are compared where the reference
 * gradient is at least SIGNAL of its tensor's largest (exact zeros too are skipped: the embedding rows of tokens
 * absent from the batch, but also invariances that float64 happens to sum to 0), and within
 * PARAMS_TOLERANCE: an element at SIGNAL carries the gradients' ~10⁻⁶ error as ~10⁻² of its own, which Adam passes
 * on to its update. The losses, which every parameter feeds, are compared in full at TOLERANCE. So is the first
 * step's gradient norm (identical parameters); the later ones at PARAMS_TOLERANCE: of everything compared, a gradient
 * norm is what those elements move most (measured on Llama's fixture: two elements whose gradients are ~10⁻⁶ of
 * their tensor's largest moved the 10th step's norm by 3·10⁻⁵ when only attention's rounding changed, the losses by
 * under 5·10⁻⁶).
 */
const SIGNAL = 1e-4;
const PARAMS_TOLERANCE = 1e-4;

/** Worst per-tensor relative error over the compared elements; `skipped`: elements with a nonzero gradient below SIGNAL. */
function worstParameter(model: DecoderModel, flat: Float32Array, fx: ReferenceFixture): { name: string; error: number; skipped: number } {
  let worst = { name: "", error: 0, skipped: 0 };
  let skipped = 0;
  for (const spec of model.layout.tensors) {
    const want = fx.finals.get(spec.name)!;
    const grad = fx.grads.get(spec.name)!;
    const got = tensorView(flat, spec);
    const gmax = grad.reduce((m, g) => Math.max(m, Math.abs(g)), 0);
    const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    let diff = 0;
    for (let i = 0; i < want.length; i++) {
      if (Math.abs(grad[i]) < SIGNAL * gmax) skipped += grad[i] === 0 ? 0 : 1;
      else diff = Math.max(diff, Math.abs(got[i] - want[i]));
    }
    if (!(diff / scale <= worst.error)) worst = { name: spec.name, error: diff / scale, skipped: 0 };
  }
  return { ...worst, skipped };
}

describe.each(["gpt2" as const, ...FIXTURE_FAMILIES].map((f) => [f]))("%s", (family) => {
  let fx: ReferenceFixture;
  beforeAll(async () => {
    fx = family === "gpt2" ? await loadReferenceFixture() : await loadFamilyFixture(family);
  });

  test("config.json is read as this family", () => {
    expect(fx.model.config.family).toBe(family);
  });

  test(`logits, loss and every parameter gradient match PyTorch within ${TOLERANCE} relative`, async () => {
    const model = newModel(fx);
    const r = new Recorder(gpu);
    model.setBatch(fixtureBatch(fx));
    model.forward(r, 0);
    r.submit();
    const logitsError = relativeError(await model.readLogits(), fx.logits);
    const weightSum = fx.weights.reduce((a, b) => a + b, 0);
    const loss = (await model.readLosses()).reduce((a, b) => a + b, 0) / weightSum;
    const lossError = Math.abs(loss - fx.loss) / Math.abs(fx.loss);

    model.zeroGradients(r);
    model.forward(r, 1 / weightSum);
    model.backward(r);
    r.submit();
    const worst = worstTensor(model, await model.getGradients(), fx.grads);
    console.log(`${family} vs PyTorch: logits ${logitsError.toExponential(2)}, loss ${lossError.toExponential(2)}, worst gradient ${worst.error.toExponential(2)} (${worst.name})`);
    expect(logitsError).toBeLessThan(TOLERANCE);
    expect(lossError).toBeLessThan(TOLERANCE);
    expect(worst.error).toBeLessThan(TOLERANCE);
    model.destroy();
  });

  test("10 AdamW steps through the Trainer follow PyTorch's losses, gradient norms and parameters", async () => {
    const model = newModel(fx);
    const o = fx.adamw;
    const trainer = fixtureTrainer(gpu, model, fx);
    let worstLoss = 0;
    let worstNorm = 0; // after the first step
    for (let i = 0; i < o.steps; i++) {
      const m = await trainer.trainStep();
      worstLoss = Math.max(worstLoss, Math.abs(m.loss - fx.stepLosses[i]) / fx.stepLosses[i]);
      const normError = Math.abs(m.grad_norm - fx.gradNorms[i]) / fx.gradNorms[i];
      if (i === 0) expect(normError).toBeLessThan(TOLERANCE);
      else worstNorm = Math.max(worstNorm, normError);
    }
    expect(fx.stepLosses[o.steps - 1]).toBeLessThan(0.95 * fx.stepLosses[0]); // the fixture really trains
    expect(worstLoss).toBeLessThan(TOLERANCE);
    expect(worstNorm).toBeLessThan(PARAMS_TOLERANCE);
    let compared = "";
    if (fx.finals.size > 0) { // GPT-2's fixture records no parameters after the steps
      const params = worstParameter(model, await model.getParameters(), fx);
      compared = `, parameters ${params.error.toExponential(2)} (${params.name}; ${params.skipped} of ${model.layout.count} at rounding-level gradient not compared)`;
      expect(params.skipped).toBeLessThan(model.layout.count / 100);
      expect(params.error).toBeLessThan(PARAMS_TOLERANCE);
    }
    console.log(`${family} vs PyTorch over ${o.steps} AdamW steps: loss ${worstLoss.toExponential(2)}, grad norm ${worstNorm.toExponential(2)}${compared}`);
    model.destroy();
  });
});
