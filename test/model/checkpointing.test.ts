/**
 * Activation checkpointing (DecoderModel's `checkpointing`): one layer's activations shared by all and recomputed in
 * backward give the same loss and gradients as the run that keeps every layer's — bit for bit, since every kernel is
 * deterministic and the recomputation sees the same inputs — for every family, full fine-tuning and LoRA with
 * dropout; and the memory plan stays equal to what the model allocates, with the layers' activations counted once.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { createKernels, type Kernels } from "../../src/gpu/kernels/index.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { DecoderModel, type ModelOptions } from "../../src/model/decoder.ts";
import { DEFAULT_LORA_TARGETS, initLora, loraLayout } from "../../src/model/lora.ts";
import { memoryPlan } from "../../src/model/memory.ts";
import { FIXTURE_FAMILIES, fixtureBatch, loadFamilyFixture, loadReferenceFixture, type ReferenceFixture } from "../fixtures/reference.ts";

let gpu: Gpu;
let kernels: Kernels;
beforeAll(async () => {
  gpu = await acquireGpu();
  kernels = await createKernels(gpu);
});
afterAll(() => gpu?.destroy());

async function step(fx: ReferenceFixture, options: Omit<ModelOptions, "B" | "T" | "training">, adapters?: Float32Array) {
  const model = new DecoderModel(gpu, kernels, fx.model.config, { B: fx.B, T: fx.T, training: true, ...options });
  model.setParameters(fx.model.params);
  if (adapters) model.setAdapters(adapters);
  model.dropoutSeed = 4242;
  const r = new Recorder(gpu);
  model.setBatch(fixtureBatch(fx));
  model.zeroGradients(r);
  model.forward(r, 1 / fx.weights.reduce((s, w) => s + w, 0));
  model.backward(r);
  r.submit();
  const out = { losses: await model.readLosses(), grads: await model.getGradients(), dx: await model.inputEmbeddingGradient(), bytes: model.allocatedBytes };
  model.destroy();
  return out;
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe("activation checkpointing", () => {
  for (const family of ["gpt2", ...FIXTURE_FAMILIES] as const) {
    test(`${family}: gradients equal the non-checkpointed run bit for bit (full fine-tuning, and LoRA with dropout)`, async () => {
      const fx = family === "gpt2" ? await loadReferenceFixture() : await loadFamilyFixture(family);
      const plain = await step(fx, {});
      const checkpointed = await step(fx, { checkpointing: true });
      expect(bits(checkpointed.losses).equals(bits(plain.losses))).toBe(true);
      expect(bits(checkpointed.grads).equals(bits(plain.grads))).toBe(true);
      expect(bits(checkpointed.dx).equals(bits(plain.dx))).toBe(true);
      if (fx.model.config.nLayer > 1) expect(checkpointed.bytes).toBeLessThan(plain.bytes);

      const lora = loraLayout(fx.model.config, { rank: 2, alpha: 4, dropout: 0.2, targets: DEFAULT_LORA_TARGETS[fx.model.config.family] });
      const adapters = initLora(lora, 9);
      adapters.forEach((_, i) => (adapters[i] += 0.01 * Math.sin(i))); // B ≠ 0, so dA is not zero
      const a = await step(fx, { lora }, adapters);
      const b = await step(fx, { lora, checkpointing: true }, adapters);
      expect(a.grads.some((g) => g !== 0)).toBe(true);
      expect(bits(b.grads).equals(bits(a.grads))).toBe(true);
      expect(bits(b.dx).equals(bits(a.dx))).toBe(true);
    });
  }

  test("the memory plan equals DecoderModel's allocation with checkpointing (with and without LoRA)", async () => {
    for (const fx of [await loadReferenceFixture(), await loadFamilyFixture("gemma2"), await loadFamilyFixture("phi")]) {
      const config = fx.model.config;
      for (const lora of [undefined, loraLayout(config, { rank: 3, alpha: 3, dropout: 0.1, targets: DEFAULT_LORA_TARGETS[config.family] })]) {
        const shape = { B: 2, T: 6, training: true, lora, checkpointing: true };
        const plan = memoryPlan(config, shape);
        const model = new DecoderModel(gpu, kernels, config, shape);
        const buckets = plan.buffers.filter((b) => b.label.startsWith("embedding bucket")).reduce((s, b) => s + b.bytes, 0);
        expect(plan.total - buckets).toBe(model.allocatedBytes);
        expect(plan.buffers.filter((b) => b.label.endsWith(".out")).length).toBe(config.nLayer);
        model.destroy();
      }
    }
  });
});

describe("frozen weights over maxBufferSize", () => {
  test("a frozen base paged over several buffers (slots whole in each) computes what one buffer does, and the plan counts the pages", async () => {
    const fx = await loadFamilyFixture("llama");
    const config = fx.model.config;
    const lora = loraLayout(config, { rank: 2, alpha: 4, dropout: 0, targets: ["q_proj", "v_proj", "down_proj"] });
    const adapters = initLora(lora, 9);
    adapters.forEach((_, i) => (adapters[i] += 0.01 * Math.cos(i)));
    const maxBufferBytes = 16 << 10; // the embedding (83·36 floats) and every block tensor fit; the whole layout does not
    const one = await step(fx, { lora }, adapters);
    const paged = await step(fx, { lora, maxBufferBytes, checkpointing: true }, adapters);
    expect(bits(paged.losses).equals(bits(one.losses))).toBe(true);
    expect(bits(paged.grads).equals(bits(one.grads))).toBe(true);
    const shape = { B: fx.B, T: fx.T, training: true, lora, checkpointing: true, maxBufferBytes };
    const plan = memoryPlan(config, shape);
    const pages = plan.buffers.filter((b) => /^params(\[\d+\])?$/.test(b.label));
    expect(pages.length).toBeGreaterThan(3);
    for (const p of pages) expect(p.bytes).toBeLessThanOrEqual(maxBufferBytes);
    const model = new DecoderModel(gpu, kernels, config, shape);
    model.setParameters(fx.model.params);
    expect(await model.getParameters()).toEqual(fx.model.params);
    const buckets = plan.buffers.filter((b) => b.label.startsWith("embedding bucket")).reduce((s, b) => s + b.bytes, 0);
    expect(plan.total - buckets).toBe(model.allocatedBytes);
    model.destroy();
  });
});
