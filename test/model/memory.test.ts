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
    const config = presetConfig("micro"); // vocab 2048, 2 heads
    const plan = memoryPlan(config, { B: 8, T: 64, training: true });
    // logits: 8·64·2048 floats = 4 MiB; the next largest activations are 8·64·256 floats (the MLP), 512 KiB
    const limits = { maxBufferSize: 64 << 20, maxStorageBufferBindingSize: 1 << 20 };
    const over = overruns(plan, limits);
    expect(over[0]).toEqual({ what: "buffer logits", bytes: 4 << 20, limit: 1 << 20, limitName: "maxStorageBufferBindingSize" });
    expect(largestFittingBatch(config, plan, limits)).toBe(2);
    expect(fitError(config, plan, limits)).toBe(
      "the run cannot fit the GPU: buffer logits needs 4.0 MiB, over the adapter's maxStorageBufferBindingSize (1.0 MiB) by 3.0 MiB; --batch-size 2 fits at 64 tokens",
    );
    expect(fitError(config, plan, { maxBufferSize: 1 << 30, maxStorageBufferBindingSize: 1 << 30 })).toBeNull();
    // parameters are bound a slot at a time: a whole-buffer limit applies to them, the binding limit to their largest slot
    const small = { maxBufferSize: 1 << 30, maxStorageBufferBindingSize: 300_000 };
    expect(overruns(memoryPlan(config, { B: 1, T: 8, training: true }), small).map((o) => o.what)).toEqual(["largest parameter tensor"]);
  });
});
