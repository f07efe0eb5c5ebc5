import { afterAll, expect, test } from "bun:test";
import { createSoftcapKernels } from "../../../src/gpu/kernels/softcap.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, f32, freeTensors, random, read, run, tensor, expectClose } from "./harness.ts";

const softcap = await createSoftcapKernels(context);
afterAll(freeTensors);

test.each([[1, 3], [1000, 30], [70_001, 2]])("n=%d cap=%d: forward in place and backward match the float64 reference", async (n, cap) => {
  const x = random(n, n, -4 * cap, 4 * cap), dout = random(n, n + 1);
  const values = tensor(x);
  run((r) => softcap.forward(r, { values, n, cap }));
  const capped = await read(values);
  expectClose(capped, ref.softcap(x, cap), 1e-6, "capped");
  const grads = tensor(dout);
  run((r) => softcap.backward(r, { grads, capped: tensor(capped), n, cap }));
  expectClose(await read(grads), ref.softcapBackward(dout, x, cap), 1e-5, "grads");
});

test("huge inputs saturate to ±cap without NaN", async () => {
  const x = f32([1e30, -1e30, 3e38, 0]);
  const values = tensor(x);
  run((r) => softcap.forward(r, { values, n: 4, cap: 5 }));
  expect(Array.from(await read(values))).toEqual([5, -5, 5, 0]);
});
