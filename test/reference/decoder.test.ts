import { describe, expect, test } from "bun:test";
import { type Batch, createOptimizerState, decoderForwardBackward, optimizerStep } from "../../src/reference/decoder.ts";
import { paramLayout, tensorView } from "../../src/model/params.ts";
import { gpt2Config } from "../../src/model/config.ts";
import { initParams } from "../../src/model/init.ts";
import { Rng } from "../../src/model/rng.ts";
import { FIXTURE_FAMILIES, loadFamilyFixture, loadReferenceFixture } from "../fixtures/reference.ts";
import { expectGradient } from "./finite-diff.ts";
import { relativeError } from "../helpers/numeric.ts";

describe("float64 reference gpt2", () => {
  test("finite-difference check of every parameter gradient on a tiny random model", () => {
    const config = gpt2Config({ nLayer: 2, nHead: 2, nEmbd: 8, vocabSize: 11, nPositions: 6, layerNormEps: 1e-5 });
    const layout = paramLayout(config);
    const rng = new Rng(99);
    // larger-than-init weights so every path (attention softmax, GELU curvature) matters to the loss
    const params = new Float64Array(layout.size);
    for (const spec of layout.tensors) rng.fillNormal(tensorView(params, spec), 0.5);
    const B = 2, T = 5;
    const batch: Batch = {
      B, T,
      tokens: Uint32Array.from({ length: B * T }, () => rng.int(11)),
      targets: Uint32Array.from({ length: B * T }, () => rng.int(11)),
      weights: new Float64Array([0, 0, 1, 1, 2, 0, 1, 0.5, 1, 3]),
    };
    const { grads } = decoderForwardBackward(config, params, batch, layout);
    const loss = () => decoderForwardBackward(config, params, batch, layout).loss;
    // one check over the whole flat array: every tensor, and the padding (whose gradient must be 0)
    expectGradient(loss, params, grads, { tolerance: 1e-6 });
    // positions past T get no gradient
    expect(tensorView(grads, layout.global.wpe!).subarray(T * 8).every((g) => g === 0)).toBe(true);
  });

  test("matches PyTorch on tiny-random-gpt2: logits, loss, every gradient, 10 AdamW steps", async () => {
    const fixture = await loadReferenceFixture();
    const { config, layout } = fixture.model;
    const params = Float64Array.from(fixture.model.params);
    const batch: Batch = { B: fixture.B, T: fixture.T, tokens: fixture.tokens, targets: fixture.targets, weights: fixture.weights };
    const result = decoderForwardBackward(config, params, batch, layout);
    expect(Math.abs(result.loss - fixture.loss)).toBeLessThan(1e-12);
    expect(relativeError(result.logits, fixture.logits)).toBeLessThan(1e-12);
    expect(fixture.grads.size).toBe(layout.tensors.length);
    for (const spec of layout.tensors) {
      const err = relativeError(tensorView(result.grads, spec), fixture.grads.get(spec.name)!);
      if (!(err < 1e-9)) throw new Error(`${spec.name}: relative error ${err}`);
    }

    const state = createOptimizerState(layout);
    const losses: number[] = [];
    const norms: number[] = [];
    for (let step = 0; step < fixture.adamw.steps; step++) {
      const { loss, grads } = decoderForwardBackward(config, params, batch, layout);
      losses.push(loss);
      norms.push(optimizerStep(layout, params, grads, state, fixture.adamw));
    }
    for (let i = 0; i < losses.length; i++) {
      expect(Math.abs(losses[i] - fixture.stepLosses[i])).toBeLessThan(1e-10);
      expect(Math.abs(norms[i] - fixture.gradNorms[i]) / fixture.gradNorms[i]).toBeLessThan(1e-9);
    }
  });

  test("training from GPT-2 init lowers the loss", () => {
    const config = gpt2Config({ nLayer: 1, nHead: 2, nEmbd: 16, vocabSize: 13, nPositions: 8, layerNormEps: 1e-5 });
    const layout = paramLayout(config);
    const params = Float64Array.from(initParams(layout, 5));
    const tokens = Uint32Array.from({ length: 8 }, (_, i) => i % 4);
    const batch: Batch = { B: 1, T: 8, tokens, targets: tokens.map((t) => (t + 1) % 4), weights: new Float64Array(8).fill(1) };
    const state = createOptimizerState(layout);
    const settings = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1 };
    const first = decoderForwardBackward(config, params, batch, layout);
    let last = first;
    for (let i = 0; i < 30; i++) {
      optimizerStep(layout, params, last.grads, state, settings);
      last = decoderForwardBackward(config, params, batch, layout);
    }
    expect(first.loss).toBeCloseTo(Math.log(13), 1);
    expect(last.loss).toBeLessThan(first.loss / 2);
  });
});

describe.each(FIXTURE_FAMILIES.map((f) => [f]))("float64 reference %s", (family) => {
  test("matches PyTorch (HF modeling code): logits, loss, every gradient, 10 AdamW steps and the parameters after", async () => {
    const fixture = await loadFamilyFixture(family);
    const { config, layout } = fixture.model;
    const params = Float64Array.from(fixture.model.params);
    const batch: Batch = { B: fixture.B, T: fixture.T, tokens: fixture.tokens, targets: fixture.targets, weights: fixture.weights };
    const result = decoderForwardBackward(config, params, batch, layout);
    expect(Math.abs(result.loss - fixture.loss) / fixture.loss).toBeLessThan(1e-12);
    expect(relativeError(result.logits, fixture.logits)).toBeLessThan(1e-11);
    for (const spec of layout.tensors) {
      const err = relativeError(tensorView(result.grads, spec), fixture.grads.get(spec.name)!);
      if (!(err < 1e-9)) throw new Error(`${spec.name}: relative error ${err}`);
    }
    const state = createOptimizerState(layout);
    for (let step = 0; step < fixture.adamw.steps; step++) {
      const { loss, grads } = decoderForwardBackward(config, params, batch, layout);
      expect(Math.abs(loss - fixture.stepLosses[step]) / fixture.stepLosses[step]).toBeLessThan(1e-10);
      optimizerStep(layout, params, grads, state, fixture.adamw);
    }
    for (const spec of layout.tensors) {
      const err = relativeError(tensorView(params, spec), fixture.finals.get(spec.name)!);
      if (!(err < 1e-8)) throw new Error(`${spec.name} after ${fixture.adamw.steps} steps: relative error ${err}`);
    }
  });

  test("finite-difference check of every parameter gradient", async () => {
    const { config: big } = (await loadFamilyFixture(family)).model;
    // the fixture's architecture, one block and a short sequence: finite differences of every coordinate stay cheap
    const config = { ...big, nLayer: 1, nPositions: 5 };
    const layout = paramLayout(config);
    const rng = new Rng(7);
    const params = new Float64Array(layout.size);
    for (const spec of layout.tensors) rng.fillNormal(tensorView(params, spec), 0.4);
    const B = 2, T = 4;
    const batch: Batch = {
      B, T,
      tokens: Uint32Array.from({ length: B * T }, () => rng.int(config.vocabSize)),
      targets: Uint32Array.from({ length: B * T }, () => rng.int(config.vocabSize)),
      weights: new Float64Array([0, 1, 1, 2, 1, 0.5, 1, 3]),
    };
    const { grads } = decoderForwardBackward(config, params, batch, layout);
    expectGradient(() => decoderForwardBackward(config, params, batch, layout).loss, params, grads, { tolerance: 1e-6, sample: 500, rng });
  });
});
