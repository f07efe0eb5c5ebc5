import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { createAdamWKernels } from "../../../src/gpu/kernels/adamw.ts";
import type { AdamWKernels } from "../../../src/gpu/kernels/index.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, expectClose, freeTensors, random, read, readRaw, Rng, run, tensor, write, zeros } from "./harness.ts";

setDefaultTimeout(120_000); // the software adapter shares two CPU cores with everything else

afterAll(freeTensors);

const BLOCK_BYTES = 256 * 16 * 4; // one norm-reduction block (WG·ITEMS floats): the smallest chunk
const whole = await createAdamWKernels(context);
const chunked = await createAdamWKernels(context, { maxBindingBytes: 2 * BLOCK_BYTES + 100 }); // 8192-float chunks

async function gpuNormSquared(kernels: AdamWKernels, grads: Float64Array): Promise<Float32Array> {
  const out = zeros(1);
  run((r) => kernels.gradNormSquared(r, { out, grads: tensor(grads), n: grads.length }));
  return readRaw(out);
}

test.each([1, 5, 4096, 4097, 100_003])("gradNormSquared of %d floats matches float64, chunked or not, bit for bit", async (n) => {
  const grads = random(n, n, -3, 3);
  const [plain, split] = [await gpuNormSquared(whole, grads), await gpuNormSquared(chunked, grads)];
  // a sum of n positive terms in a tree: relative error ~log2(n)·2⁻²⁴
  expectClose(plain, [ref.gradNormSquared(grads)], 1e-5);
  expect(split).toEqual(plain); // chunks are whole reduction blocks, so the order of additions is the same
  expect(await gpuNormSquared(whole, grads)).toEqual(plain); // deterministic
});

const HYPER = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };

/** Runs `steps` AdamW steps on the GPU and in float64 with fresh gradients each step; returns both states. */
async function trainBoth(kernels: AdamWKernels, n: number, steps: number, maxNorm: number, hyper = HYPER) {
  const rng = new Rng(n + steps);
  const params = random(n, rng);
  const state = { params: params.slice(), m: new Float64Array(n), v: new Float64Array(n) };
  const gpu = { params: tensor(params), m: zeros(n), v: zeros(n), grads: zeros(n), normSquared: zeros(1) };
  const clipScales: number[] = [];
  for (let step = 1; step <= steps; step++) {
    const grads = random(n, rng, -2 * step, 2 * step); // growing, so clipping starts part-way when enabled
    write(gpu.grads, grads);
    run((r) => {
      kernels.gradNormSquared(r, { out: gpu.normSquared, grads: gpu.grads, n });
      kernels.adamw(r, { ...gpu, n, ...hyper, step, maxNorm });
    });
    const clipScale = ref.clipScale(ref.gradNormSquared(grads), maxNorm);
    clipScales.push(clipScale);
    ref.adamwStep(state.params, grads, state.m, state.v, { ...hyper, step, clipScale });
  }
  return { gpu: { params: await read(gpu.params), m: await read(gpu.m), v: await read(gpu.v) }, ref: state, clipScales };
}

function expectSameState(got: Record<"params" | "m" | "v", Float64Array>, want: Record<"params" | "m" | "v", Float64Array>) {
  // elementwise f32 arithmetic repeated over a few steps: ~1e-7 relative; 1e-5 asserted
  for (const key of ["params", "m", "v"] as const) expectClose(got[key], want[key], 1e-5, key);
}

test("five steps without clipping match torch.optim.AdamW (float64 reference), weight decay included", async () => {
  const { gpu, ref: want, clipScales } = await trainBoth(whole, 3000, 5, 0);
  expect(clipScales.every((c) => c === 1)).toBe(true);
  expectSameState(gpu, want);
  // the decay is really there: the same steps without it end elsewhere
  const noDecay = await trainBoth(whole, 3000, 5, 0, { ...HYPER, weightDecay: 0 });
  expect(Math.max(...noDecay.gpu.params.map((p, i) => Math.abs(p - gpu.params[i])))).toBeGreaterThan(1e-5);
});

test("five steps with global-norm clipping (norm computed on the GPU) match the reference", async () => {
  const n = 2000;
  const maxNorm = 60; // ‖g‖ ≈ √(n/3)·2·step ≈ 52·step: step 1 is not clipped, the later ones are
  const { gpu, ref: want, clipScales } = await trainBoth(whole, n, 5, maxNorm);
  expect(clipScales[0]).toBe(1);
  expect(clipScales.slice(1).every((c) => c < 1)).toBe(true);
  expectSameState(gpu, want);
});

test("chunked steps (bound at offsets, several chunks) give bit-identical results to one binding", async () => {
  const n = 20_001; // 3 chunks of 8192 floats, the last one ragged
  const [split, plain] = [await trainBoth(chunked, n, 3, 100), await trainBoth(whole, n, 3, 100)];
  expect(split.clipScales.some((c) => c < 1)).toBe(true);
  for (const key of ["params", "m", "v"] as const) expect(split.gpu[key]).toEqual(plain.gpu[key]);
  expectSameState(split.gpu, split.ref);
});
