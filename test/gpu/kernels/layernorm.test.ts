import { afterAll, expect, test } from "bun:test";
import { createLayerNormKernels, rowBlocks } from "../../../src/gpu/kernels/layernorm.ts";
import { createResidualKernels } from "../../../src/gpu/kernels/residual.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, f32, freeTensors, random, read, readRaw, run, tensor, expectClose, zeros } from "./harness.ts";

const layerNorm = await createLayerNormKernels(context);
afterAll(freeTensors);

const EPS = 1e-5;
const add = (a: Float64Array, b: Float64Array) => a.map((x, i) => x + b[i]);

// Rows with a mean far from zero (inputs in [3, 5)) make a one-pass E[x²] − mean² variance visibly inaccurate.
function inputs(N: number, C: number, seed: number) {
  return { inp: random(N * C, seed, 3, 5), weight: random(C, seed + 1, 0.5, 1.5), bias: random(C, seed + 2) };
}

// N = 300 and 9000 split into several row blocks (9000: more rows per block than the minimum); C = 1 has zero variance;
// N = 70000 rows need a grid folded past 65535 workgroups.
const shapes = [[1, 1], [3, 7], [17, 768], [300, 100], [9000, 33], [5, 1600], [70_000, 16]] as const;

// forward: relative error (max |gpu − ref| / max |ref|) below 1e-5 for out and rstd, 1e-6 for the mean.
test.each(shapes)("forward N=%d C=%d matches the float64 reference (out, mean, rstd)", async (N, C) => {
  const x = inputs(N, C, N + C);
  const out = zeros(N * C), mean = zeros(N), rstd = zeros(N);
  const params = { inp: tensor(x.inp), weight: tensor(x.weight), bias: tensor(x.bias) };
  run((r) => layerNorm.forward(r, { out, mean, rstd, ...params, N, C }));
  const want = ref.layerNormForward(x.inp, x.weight, x.bias, N, C, EPS);
  expectClose(await read(out), want.out, 1e-5, "out");
  expectClose(await read(mean), want.mean, 1e-6, "mean");
  expectClose(await read(rstd), want.rstd, 1e-5, "rstd");
});

type Gradients = { dinp: Float64Array; dweight: Float64Array; dbias: Float64Array };

async function backwardOnGpu(N: number, C: number, seed: number, start: Gradients) {
  const x = inputs(N, C, seed);
  const saved = ref.layerNormForward(x.inp, x.weight, x.bias, N, C, EPS);
  const mean = f32(saved.mean), rstd = f32(saved.rstd); // what the GPU forward would have saved
  const dout = random(N * C, seed + 3);
  const dinp = tensor(start.dinp), dweight = tensor(start.dweight), dbias = tensor(start.dbias);
  const saved32 = { dout: tensor(dout), inp: tensor(x.inp), weight: tensor(x.weight), mean: tensor(mean), rstd: tensor(rstd) };
  run((r) => layerNorm.backward(r, { dinp, dweight, dbias, ...saved32, N, C }));
  return {
    got: { dinp, dweight, dbias },
    want: ref.layerNormBackward(dout, x.inp, x.weight, mean, rstd, N, C),
  };
}

// backward: all three outputs accumulate (+=) into non-zero starting values; relative error below 1e-4
// (each is a sum over a row or a column).
test.each(shapes)("backward N=%d C=%d adds dinp, dweight, dbias to what is there", async (N, C) => {
  const start = { dinp: random(N * C, 1), dweight: random(C, 2), dbias: random(C, 3) };
  const { got, want } = await backwardOnGpu(N, C, 7 * N + C, start);
  expectClose(await read(got.dinp), add(start.dinp, want.dinp), 1e-4, "dinp");
  expectClose(await read(got.dweight), add(start.dweight, want.dweight), 1e-4, "dweight");
  expectClose(await read(got.dbias), add(start.dbias, want.dbias), 1e-4, "dbias");
});

test("backward is bit-for-bit deterministic, column sums included", async () => {
  const [N, C] = [2000, 130];
  expect(rowBlocks(N).blocks).toBeGreaterThan(1);
  const start = { dinp: new Float64Array(N * C), dweight: new Float64Array(C), dbias: new Float64Array(C) };
  const runs = await Promise.all([0, 1].map(() => backwardOnGpu(N, C, 11, start)));
  for (const key of ["dinp", "dweight", "dbias"] as const) {
    expect(await readRaw(runs[1].got[key])).toEqual(await readRaw(runs[0].got[key]));
  }
});

test("row blocks cover every row, at most 256 of them", () => {
  for (const N of [1, 31, 32, 33, 8192, 8193, 100_000]) {
    const { rowsPerBlock, blocks } = rowBlocks(N);
    expect(blocks).toBeLessThanOrEqual(256);
    expect(blocks * rowsPerBlock).toBeGreaterThanOrEqual(N);
    expect((blocks - 1) * rowsPerBlock).toBeLessThan(N);
  }
});

// residual + forward fused: residual is exactly the f32 sum, out/mean/rstd match float64 LayerNorm of it, and every
// output is bit-identical to residual.add followed by forward (what the decoder ran before the fusion).
const residual = await createResidualKernels(context);
test.each([[1, 1], [3, 7], [17, 768], [300, 100], [70_000, 16]] as const)("residual + forward N=%d C=%d: the sum, then LayerNorm of it", async (N, C) => {
  const x = inputs(N, C, 5 * N + C);
  const branch = random(N * C, N + 3, -2, 2);
  const sum = f32(add(x.inp, branch)); // the f32 sum the kernel stores
  const params = { a: tensor(x.inp), b: tensor(branch), weight: tensor(x.weight), bias: tensor(x.bias), N, C };
  const fused = { residual: zeros(N * C), out: zeros(N * C), mean: zeros(N), rstd: zeros(N) };
  const split = { residual: zeros(N * C), out: zeros(N * C), mean: zeros(N), rstd: zeros(N) };
  run((r) => {
    layerNorm.residualForward(r, { ...params, ...fused });
    residual.add(r, { out: split.residual, a: params.a, b: params.b, n: N * C });
    layerNorm.forward(r, { out: split.out, mean: split.mean, rstd: split.rstd, inp: split.residual, weight: params.weight, bias: params.bias, N, C });
  });
  expect(await read(fused.residual)).toEqual(sum);
  const want = ref.layerNormForward(sum, x.weight, x.bias, N, C, EPS);
  expectClose(await read(fused.out), want.out, 1e-5, "out");
  expectClose(await read(fused.mean), want.mean, 1e-6, "mean");
  expectClose(await read(fused.rstd), want.rstd, 1e-5, "rstd");
  for (const key of ["residual", "out", "mean", "rstd"] as const) expect(await readRaw(fused[key])).toEqual(await readRaw(split[key]));
});
