import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { createResidualKernels } from "../../../src/gpu/kernels/residual.ts";
import { MAX_GROUPS_X } from "../../../src/gpu/workgroups.ts";
import { context, f32, freeTensors, random, read, run, tensor } from "./harness.ts";

setDefaultTimeout(120_000); // the software adapter shares two CPU cores with everything else

const residual = await createResidualKernels(context);
afterAll(freeTensors);

// An f32 add is exactly rounded, so the GPU must match the float64 sum rounded to f32 bit for bit.
const f32Sum = (a: Float64Array, b: Float64Array) => f32(a.map((x, i) => x + b[i]));

test.each([1, 7, 255, 256, 1000, 65537])("add: out = a + b for n=%d, elements past n untouched", async (n) => {
  const a = random(n + 3, n), b = random(n + 3, n + 1), sentinel = random(n + 3, n + 2);
  const out = tensor(sentinel);
  run((r) => residual.add(r, { out, a: tensor(a), b: tensor(b), n }));
  const got = await read(out);
  expect(got.subarray(0, n)).toEqual(f32Sum(a, b).subarray(0, n));
  expect(got.subarray(n)).toEqual(sentinel.subarray(n));
});

test.each([1, 33, 4099])("accumulate: dst += src, twice, for n=%d", async (n) => {
  const dst = random(n, 3 * n), src = random(n, 5 * n);
  const dstBinding = tensor(dst);
  const srcBinding = tensor(src);
  run((r) => {
    residual.accumulate(r, { dst: dstBinding, src: srcBinding, n });
    residual.accumulate(r, { dst: dstBinding, src: srcBinding, n });
  });
  expect(await read(dstBinding)).toEqual(f32Sum(f32Sum(dst, src), src));
  expect(await read(srcBinding)).toEqual(src);
});

test("a grid folded past 65535 workgroups reaches every element", async () => {
  const n = MAX_GROUPS_X * 256 + 300; // needs a second row of workgroups
  const a = new Float32Array(n).map((_, i) => i % 1024);
  const b = new Float32Array(n).fill(0.5);
  const out = tensor(new Float32Array(n));
  run((r) => residual.add(r, { out, a: tensor(a), b: tensor(b), n }));
  const got = await read(out);
  let mismatches = 0;
  for (let i = 0; i < n; i++) if (got[i] !== (i % 1024) + 0.5) mismatches++;
  expect(mismatches).toBe(0);
});
