/**
 * The GPU model on a random config whose sizes are not tile multiples, against the float64 reference model, and a
 * finite-difference check of the GPU gradient itself (a directional derivative along a random direction).
 */
import { afterAll, expect, test } from "bun:test";
import { acquireGpu } from "../../src/gpu/device.ts";
import { createKernels } from "../../src/gpu/kernels/index.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { gpt2Config } from "../../src/model/config.ts";
import { type Batch, DecoderModel } from "../../src/model/decoder.ts";
import { initParams } from "../../src/model/init.ts";
import { paramLayout, tensorView } from "../../src/model/params.ts";
import { relativeError } from "../helpers/numeric.ts";
import { Rng } from "../../src/model/rng.ts";
import { decoderForwardBackward } from "../../src/reference/decoder.ts";

const gpu = await acquireGpu();
const kernels = await createKernels(gpu);
afterAll(() => gpu.destroy());

const config = gpt2Config({ nLayer: 2, nHead: 3, nEmbd: 24, vocabSize: 37, nPositions: 11, layerNormEps: 1e-5 });
const B = 3;
const T = 7;

function randomBatch(rng: Rng): Batch {
  const n = B * T;
  const tokens = Uint32Array.from({ length: n }, () => rng.int(config.vocabSize));
  const targets = Uint32Array.from({ length: n }, () => rng.int(config.vocabSize));
  // weights like a distillation batch: some 0 (prompt/padding), some 1, some 0.5
  const weights = Float32Array.from({ length: n }, (_, i) => [0, 1, 0.5, 1][i % 4]);
  return { tokens, targets, weights, B, T };
}

function model(params: Float32Array): DecoderModel {
  const m = new DecoderModel(gpu, kernels, config, { B, T, training: true });
  m.setParameters(params);
  return m;
}

async function lossAndGrads(m: DecoderModel, batch: Batch): Promise<{ loss: number; grads: Float32Array }> {
  const r = new Recorder(gpu);
  const weightSum = batch.weights.reduce((a, b) => a + b, 0);
  m.zeroGradients(r);
  m.setBatch(batch);
  m.forward(r, 1 / weightSum);
  m.backward(r);
  r.submit();
  const loss = (await m.readLosses()).reduce((a, b) => a + b, 0) / weightSum;
  return { loss, grads: await m.getGradients() };
}

test("loss and gradients match the float64 reference on a non-tile-multiple config", async () => {
  const rng = new Rng(7);
  // larger-than-GPT-2 init so activations and gradients are far from zero everywhere
  const params = initParams(paramLayout(config), rng).map((x) => x * 5);
  const batch = randomBatch(rng);
  const gpuModel = model(params);
  const got = await lossAndGrads(gpuModel, batch);
  const ref = decoderForwardBackward(config, Float64Array.from(params), { ...batch, weights: Float64Array.from(batch.weights) });
  expect(Math.abs(got.loss - ref.loss) / ref.loss).toBeLessThan(1e-5);
  for (const spec of gpuModel.layout.tensors) {
    const error = relativeError(tensorView(got.grads, spec), tensorView(ref.grads, spec));
    expect({ name: spec.name, ok: error < 1e-4 }).toEqual({ name: spec.name, ok: true });
  }
  gpuModel.destroy();
}, 120_000);

test("finite differences of the GPU loss agree with the GPU gradient (directional derivatives)", async () => {
  const rng = new Rng(11);
  const layout = paramLayout(config);
  const params = initParams(layout, rng);
  const batch = randomBatch(rng);
  const gpuModel = model(params);
  const { grads } = await lossAndGrads(gpuModel, batch);
  const norm = (v: Float32Array) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  const gradNorm = norm(grads);
  // Along the gradient itself (the derivative is ‖g‖, no cancellation), then along random directions over the
  // real parameters (padding stays 0). Errors are measured against ‖g‖·‖d‖, the largest a derivative can be.
  const directions = [grads.map((g) => g / gradNorm)];
  for (let trial = 0; trial < 2; trial++) {
    const d = new Float32Array(layout.size);
    for (const spec of layout.tensors) for (let i = spec.offset; i < spec.offset + spec.size; i++) d[i] = rng.normal();
    directions.push(d.map((x) => x / norm(d)));
  }
  const h = 3e-3;
  for (const direction of directions) {
    let analytic = 0;
    for (let i = 0; i < layout.size; i++) analytic += grads[i] * direction[i];
    const shifted = async (sign: number) => {
      gpuModel.setParameters(params.map((p, i) => p + sign * h * direction[i]));
      return (await lossAndGrads(gpuModel, batch)).loss;
    };
    const numeric = ((await shifted(1)) - (await shifted(-1))) / (2 * h);
    expect(Math.abs(numeric - analytic) / gradNorm).toBeLessThan(1e-3);
  }
  gpuModel.destroy();
}, 120_000);
