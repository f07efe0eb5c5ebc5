import { afterAll, test } from "bun:test";
import { createGatedKernels } from "../../../src/gpu/kernels/gated.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, freeTensors, random, read, run, tensor, expectClose, zeros } from "./harness.ts";

const gated = await createGatedKernels(context);
afterAll(freeTensors);

test.each([["swiglu", 1, 1], ["swiglu", 13, 40], ["geglu", 13, 40], ["geglu", 300, 257]] as const)("%s N=%d I=%d: forward and backward match the float64 reference", async (kind, N, I) => {
  const x = random(N * 2 * I, N + I, -8, 8), dout = random(N * I, N);
  const inp = tensor(x), out = zeros(N * I), dinp = zeros(N * 2 * I);
  run((r) => {
    gated.forward(r, { kind, out, inp, N, I });
    gated.backward(r, { kind, dinp, inp, dout: tensor(dout), N, I });
  });
  expectClose(await read(out), ref.gatedForward(x, N, I, kind), 1e-5, "out");
  expectClose(await read(dinp), ref.gatedBackward(dout, x, N, I, kind), 1e-5, "dinp");
});
