import { afterAll, expect, test } from "bun:test";
import { createRMSNormKernels } from "../../../src/gpu/kernels/rmsnorm.ts";
import { createResidualKernels } from "../../../src/gpu/kernels/residual.ts";
import { denseView } from "../../../src/gpu/kernels/index.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, f32, freeTensors, random, read, readRaw, run, tensor, expectClose, zeros } from "./harness.ts";

const rmsNorm = await createRMSNormKernels(context);
afterAll(freeTensors);

// Rows of 1, 7, 64 and 200 values (below, at and past the 32-thread workgroup), gains w and Gemma's (1 + w).
const cases = [[1, 1, 0], [5, 7, 0], [33, 64, 1], [300, 200, 1]] as const;

test.each(cases)("N=%d C=%d gainOffset=%d: forward and backward match the float64 reference", async (N, C, gainOffset) => {
  const x = random(N * C, N + C, -3, 3), w = random(C, C + 1, 0.5, 1.5), dout = random(N * C, N + 2);
  const out = zeros(N * C), rstd = zeros(N), dweight = tensor(new Float32Array(C).fill(0.5));
  const dinp = tensor(new Float32Array(N * C).fill(0.25)); // += into what is there
  const inp = tensor(x), weight = tensor(w);
  run((r) => {
    rmsNorm.forward(r, { out: denseView(out, C), rstd, inp: denseView(inp, C), weight, N, C, eps: 1e-6, gainOffset });
    rmsNorm.backward(r, { dinp, dweight, dout: denseView(tensor(dout), C), inp: denseView(inp, C), weight, rstd, N, C, gainOffset });
  });
  const want = ref.rmsNormForward(x, w, N, C, 1e-6, gainOffset);
  const grads = ref.rmsNormBackward(dout, x, w, want.rstd, N, C, gainOffset);
  expectClose(await read(out), want.out, 1e-5, "out");
  expectClose(await read(rstd), want.rstd, 1e-5, "rstd");
  expectClose(await read(dinp), grads.dinp.map((d) => d + 0.25), 1e-5, "dinp");
  expectClose(await read(dweight), grads.dweight.map((d) => d + 0.5), 1e-5, "dweight");
});

test("per-head rows through views: q heads normalised in place of a fused [N, W] tensor, dinp overwritten there", async () => {
  const N = 9, H = 3, hd = 12, W = 60, offset = 8; // heads at columns 8 … 43 of each 60-wide row
  const fused = random(N * W, 5, -2, 2), w = random(hd, 6, 0.5, 1.5), dout = random(N * H * hd, 7);
  const heads = new Float64Array(N * H * hd);
  for (let n = 0; n < N; n++) heads.set(fused.subarray(n * W + offset, n * W + offset + H * hd), n * H * hd);
  const inp = tensor(fused), weight = tensor(w), out = zeros(N * H * hd), rstd = zeros(N * H), dweight = zeros(hd);
  const dfused = tensor(new Float32Array(N * W).fill(7));
  const view = { binding: inp, stride: W, offset };
  run((r) => {
    rmsNorm.forward(r, { out: denseView(out, H * hd), rstd, inp: view, weight, N, C: hd, H, eps: 1e-6, gainOffset: 0 });
    rmsNorm.backward(r, { dinp: dfused, dweight, dout: denseView(tensor(dout), H * hd), inp: view, weight, rstd, N, C: hd, H, gainOffset: 0, accumulate: false });
  });
  const want = ref.rmsNormForward(heads, w, N * H, hd, 1e-6, 0);
  const grads = ref.rmsNormBackward(dout, heads, w, want.rstd, N * H, hd, 0);
  expectClose(await read(out), want.out, 1e-5, "out");
  expectClose(await read(dweight), grads.dweight, 1e-5, "dweight");
  const got = await readRaw(dfused);
  const expected = new Float64Array(N * W).fill(7); // columns outside the heads keep their value
  for (let n = 0; n < N; n++) expected.set(grads.dinp.subarray(n * H * hd, (n + 1) * H * hd), n * W + offset);
  expectClose(got, expected, 1e-5, "dinp in the fused tensor");
  expect(got[0]).toBe(7);
});

// residual + forward fused (the decoder's residual stream): residual is exactly the f32 sum, out/rstd match float64
// RMSNorm of it, and every output is bit-identical to residual.add followed by forward.
const residual = await createResidualKernels(context);
test.each([[1, 1, 0], [5, 7, 0], [33, 64, 1], [300, 200, 1], [2000, 33, 0]] as const)("residual + forward N=%d C=%d gainOffset=%d: the sum, then RMSNorm of it", async (N, C, gainOffset) => {
  const x = random(N * C, N + C, -3, 3), branch = random(N * C, N + 5, -2, 2), w = random(C, C + 1, 0.5, 1.5);
  const sum = f32(x.map((v, i) => v + branch[i]));
  const a = tensor(x), b = tensor(branch), weight = tensor(w);
  const fused = { residual: zeros(N * C), out: zeros(N * C), rstd: zeros(N) };
  const split = { residual: zeros(N * C), out: zeros(N * C), rstd: zeros(N) };
  run((r) => {
    rmsNorm.residualForward(r, { ...fused, a, b, weight, N, C, eps: 1e-6, gainOffset });
    residual.add(r, { out: split.residual, a, b, n: N * C });
    rmsNorm.forward(r, { out: denseView(split.out, C), rstd: split.rstd, inp: denseView(split.residual, C), weight, N, C, eps: 1e-6, gainOffset });
  });
  expect(await read(fused.residual)).toEqual(sum);
  const want = ref.rmsNormForward(sum, w, N, C, 1e-6, gainOffset);
  expectClose(await read(fused.out), want.out, 1e-5, "out");
  expectClose(await read(fused.rstd), want.rstd, 1e-5, "rstd");
  for (const key of ["residual", "out", "rstd"] as const) expect(await readRaw(fused[key])).toEqual(await readRaw(split[key]));
});
