import { afterAll, expect, test } from "bun:test";
import { createRotaryKernels, inverseFrequencies, rotaryTable } from "../../../src/gpu/kernels/rotary.ts";
import { denseView } from "../../../src/gpu/kernels/index.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, freeTensors, random, read, run, tensor, expectClose, zeros } from "./harness.ts";

const rotary = await createRotaryKernels(context);
afterAll(freeTensors);

const llama3 = { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 } as const;

// Full and partial rotary (Phi: 4 of 10 dims), several heads, Llama 3 scaling; T not a multiple of anything.
const cases = [
  { tokens: 26, T: 13, H: 2, hd: 8, R: 8, theta: 10000, scaling: { type: "none" } as const },
  { tokens: 14, T: 7, H: 4, hd: 10, R: 4, theta: 10000, scaling: { type: "none" } as const },
  { tokens: 30, T: 30, H: 3, hd: 16, R: 16, theta: 500000, scaling: llama3 },
];

test.each(cases.map((c) => [`T=${c.T} H=${c.H} hd=${c.hd} R=${c.R} ${c.scaling.type}`, c] as const))("%s: forward and backward match the float64 reference", async (_, c) => {
  const { tokens, T, H, hd, R } = c;
  const W = H * hd;
  const x = random(tokens * W, tokens + R, -2, 2), dout = random(tokens * W, tokens + 1);
  const table = tensor(rotaryTable(T, R, c.theta, c.scaling));
  const out = zeros(tokens * W), dinp = zeros(tokens * W);
  const shape = { table, N: tokens, T, H, headDim: hd, rotaryDim: R };
  run((r) => {
    rotary.forward(r, { out: denseView(out, W), inp: denseView(tensor(x), W), ...shape });
    rotary.backward(r, { out: denseView(dinp, W), inp: denseView(tensor(dout), W), ...shape });
  });
  const inv = inverseFrequencies(R, c.theta, c.scaling);
  // the reference rotates only the first R dims of each head: run it on heads of R and copy the rest
  const partial = (v: Float64Array, sign: number) => {
    const heads = new Float64Array(tokens * H * R);
    for (let i = 0; i < tokens * H; i++) heads.set(v.subarray(i * hd, i * hd + R), i * R);
    const rotated = ref.rotary(heads, tokens, T, H, R, R, inv, sign);
    const result = Float64Array.from(v);
    for (let i = 0; i < tokens * H; i++) result.set(rotated.subarray(i * R, (i + 1) * R), i * hd);
    return result;
  };
  expectClose(await read(out), partial(x, 1), 1e-5, "out");
  expectClose(await read(dinp), partial(dout, -1), 1e-5, "dinp");
});

test("Llama 3 scaling divides low frequencies by the factor, keeps high ones, blends the band between", () => {
  const plain = inverseFrequencies(64, 500000, { type: "none" });
  const scaled = inverseFrequencies(64, 500000, { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
  expect(scaled[0]).toBe(plain[0]); // wavelength 2π < 8192/4: high frequency, kept
  expect(scaled[31]).toBeCloseTo(plain[31] / 8, 15); // wavelength > 8192: divided
  const band = scaled.findIndex((f, j) => f !== plain[j] && Math.abs(f - plain[j] / 8) > 1e-18);
  expect(band).toBeGreaterThan(0);
  expect(scaled[band]).toBeLessThan(plain[band]);
  expect(scaled[band]).toBeGreaterThan(plain[band] / 8);
});
