import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { createKernels, type Kernels } from "../../src/gpu/kernels/index.ts";
import { presetConfig } from "../../src/model/config.ts";
import { DecoderModel } from "../../src/model/decoder.ts";
import { readConfig } from "../../src/model/hf.ts";
import { fitError, formatBytes, largestFittingBatch, memoryPlan, overruns } from "../../src/model/memory.ts";
import { PROJECT_ROOT } from "../helpers/cli.ts";

const FIXTURES = join(PROJECT_ROOT, "test/fixtures");
// every family fixture there is, so a family added to the graph without its buffers in the plan fails here
const FOLDERS = ["tiny-random-gpt2", ...readdirSync(join(FIXTURES, "families")).map((f) => `families/${f}`)];
let gpu: Gpu;
let kernels: Kernels;
beforeAll(async () => {
  gpu = await acquireGpu();
  kernels = await createKernels(gpu);
});
afterAll(() => gpu?.destroy());

describe("memory plan", () => {
  test("equals what DecoderModel allocates, for every family, training or not", async () => {
    for (const folder of FOLDERS) {
      const config = await readConfig(join(FIXTURES, folder));
      for (const training of [true, false]) {
        const shape = { B: 3, T: 7, training };
        const plan = memoryPlan(config, shape);
        const model = new DecoderModel(gpu, kernels, config, shape);
        // allocatedBytes leaves out the embedding-gradient buckets, which the plan counts as scratch
        const buckets = plan.buffers.filter((b) => b.label.startsWith("embedding bucket")).reduce((s, b) => s + b.bytes, 0);
        expect({ folder, training, bytes: plan.total - buckets }).toEqual({ folder, training, bytes: model.allocatedBytes });
        model.destroy();
      }
    }
  });

  test("weights, gradients and both moments are the parameter layout's size each; activations grow with B·T (attention too: no T×T buffer)", () => {
    const config = presetConfig("micro");
    const plan = memoryPlan(config, { B: 2, T: 16, training: true });
    expect(plan.byKind.gradients).toBe(plan.byKind.weights);
    expect(plan.byKind.optimizer).toBe(2 * plan.byKind.weights);
    const doubleB = memoryPlan(config, { B: 4, T: 16, training: true });
    expect(doubleB.byKind.weights).toBe(plan.byKind.weights);
    expect(doubleB.byKind.activations).toBeGreaterThan(1.9 * plan.byKind.activations);
    // flash-style attention keeps a log-sum-exp per row, no T×T probabilities: activations are linear in T as well
    const [T128, T256] = [128, 256].map((T) => memoryPlan(config, { B: 2, T, training: true }));
    expect(T256.byKind.activations).toBe(2 * T128.byKind.activations);
    expect(T256.byKind.scratch).toBeLessThanOrEqual(2 * T128.byKind.scratch);
    const inference = memoryPlan(config, { B: 2, T: 16, training: false });
    expect(inference.byKind.gradients + inference.byKind.optimizer).toBe(0);
  });

  test("GPT-2 124M training at B=8, T=1024: attention keeps 2 floats per query row and head (9.4 MiB), no T×T buffer", () => {
    const plan = memoryPlan(presetConfig("gpt2"), { B: 8, T: 1024, training: true });
    const attention = plan.buffers.filter((b) => b.label.endsWith(".attStats") || b.label === "attention D");
    // 12 layers' (max, 1/sum) per row + one shared D per row; the probabilities took 13·8·12·1024² floats = 4.9 GiB
    expect(attention.map((b) => b.bytes)).toEqual([...Array(12).fill(2 * 8 * 12 * 1024 * 4), 8 * 12 * 1024 * 4]);
    expect(formatBytes(attention.reduce((s, b) => s + b.bytes, 0))).toBe("9.4 MiB");
  });

  test("a deliberately tiny limit: the worst buffer is named with by how much it is over, and the batch that fits", () => {
    const config = presetConfig("micro"); // vocab 2048, 64 wide, MLP 256
    const plan = memoryPlan(config, { B: 8, T: 64, training: true });
    // h0.fc: 8·64·256 floats = 512 KiB; the head's logits follow the limit (no [B·T, V] buffer)
    const limits = { maxBufferSize: 64 << 20, maxStorageBufferBindingSize: 256 << 10 };
    const over = overruns(memoryPlan(config, { B: 8, T: 64, training: true, maxBindingBytes: limits.maxStorageBufferBindingSize }), limits);
    expect(over[0]).toEqual({ what: "buffer h0.fc", bytes: 512 << 10, limit: 256 << 10, limitName: "maxStorageBufferBindingSize" });
    expect(over.some((o) => o.what.startsWith("buffer head"))).toBe(false);
    expect(largestFittingBatch(config, plan, limits)).toBe(4);
    expect(fitError(config, plan, limits)).toMatch(
      /^the run cannot fit the GPU: buffer h0\.fc needs 512 KiB, over the adapter's maxStorageBufferBindingSize \(256 KiB\) by 256 KiB \(\d+ more over\); --batch-size 4 fits at 64 tokens$/,
    );
    expect(fitError(config, plan, { maxBufferSize: 1 << 30, maxStorageBufferBindingSize: 1 << 30 })).toBeNull();
    // parameters are bound a slot at a time and the vocabulary tables a range of rows at a time: the 512 KiB token
    // embedding fits a 300 kB limit, a 64 KiB MLP weight does not fit 32 KiB
    const small = { maxBufferSize: 1 << 30, maxStorageBufferBindingSize: 300_000 };
    expect(overruns(memoryPlan(config, { B: 1, T: 8, training: true, maxBindingBytes: 300_000 }), small)).toEqual([]);
    const tiny = { maxBufferSize: 1 << 30, maxStorageBufferBindingSize: 32 << 10 };
    expect(overruns(memoryPlan(config, { B: 1, T: 8, training: true, maxBindingBytes: 32 << 10 }), tiny).map((o) => o.what)).toEqual(["largest parameter tensor"]);
  });

  test("no [B·T, V] logits: the head's buffers are bounded by its chunk; GPT-2 124M at B=1, T=256 fits llvmpipe's 128 MiB bindings", () => {
    const gpt2 = presetConfig("gpt2");
    const llvmpipe = { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 128 << 20 };
    expect(overruns(memoryPlan(gpt2, { B: 1, T: 256, training: true }), llvmpipe)).toEqual([]);
    // README's example of a refusal
    expect(fitError(gpt2, memoryPlan(gpt2, { B: 24, T: 512, training: true }), llvmpipe)).toMatch(
      /^the run cannot fit the GPU: buffer h0\.fc needs 144 MiB, over the adapter's maxStorageBufferBindingSize \(128 MiB\) by 16\.0 MiB .*; --batch-size 12 fits at 512 tokens$/,
    );
    const big = memoryPlan(gpt2, { B: 8, T: 1024, training: true });
    const head = big.buffers.filter((b) => b.label.startsWith("head") || b.label === "losses");
    const logits = head.find((b) => b.label === "head logits")!;
    expect(logits.bytes).toBeLessThanOrEqual(64 << 20); // was 8·1024·50257 floats = 1.53 GiB
    expect(big.buffers.some((b) => b.label === "logits" || b.label === "capped logits")).toBe(false);
  });
});
