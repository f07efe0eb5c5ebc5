import { afterAll, expect, test } from "bun:test";
import { createGeluKernels } from "../../../src/gpu/kernels/gelu.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, f32, freeTensors, random, read, run, tensor, expectClose, zeros } from "./harness.ts";

const gelu = await createGeluKernels(context);
afterAll(freeTensors);

async function geluOnGpu(x: Float64Array, dout: Float64Array): Promise<{ out: Float64Array; dinp: Float64Array }> {
  const n = x.length;
  const inp = tensor(x), out = zeros(n), dinp = zeros(n);
  run((r) => {
    gelu.forward(r, { out, inp, n });
    gelu.backward(r, { dinp, inp, dout: tensor(dout), n });
  });
  return { out: await read(out), dinp: await read(dinp) };
}

// Elementwise: relative error (max |gpu − ref| / max |ref|) below 1e-5 against the float64 reference.
test.each([1, 255, 1000, 70_001])("forward and backward match the float64 reference for n=%d", async (n) => {
  const x = random(n, n, -6, 6), dout = random(n, n + 1);
  const got = await geluOnGpu(x, dout);
  expectClose(got.out, ref.gelu(x), 1e-5, "gelu");
  expectClose(got.dinp, ref.geluBackward(x, dout), 1e-5, "dinp");
});

test("elements past n are left untouched", async () => {
  const n = 5;
  const inp = tensor(random(n + 3, 1)), out = tensor([9, 9, 9, 9, 9, 9, 9, 9]);
  run((r) => gelu.forward(r, { out, inp, n }));
  expect(Array.from(await read(out)).slice(n)).toEqual([9, 9, 9]);
});

test("large |x| stays finite: gelu(x) → x or 0 and gelu'(x) → 1 or 0", async () => {
  const big = f32([12, 1e3, 1e13, 1e20, 3e38]);
  const x = f32([...big, ...big.map((v) => -v)]);
  const got = await geluOnGpu(x, f32(x.map(() => 1)));
  for (const v of [...got.out, ...got.dinp]) expect(Number.isFinite(v)).toBe(true);
  x.forEach((v, i) => {
    expect(Math.abs(got.out[i] - (v > 0 ? v : 0))).toBe(0); // −0 for negative x is fine
    expect(Math.abs(got.dinp[i] - (v > 0 ? 1 : 0))).toBe(0);
  });
});
