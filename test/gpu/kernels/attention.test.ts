import { afterAll, expect, test } from "bun:test";
import { createAttentionKernels } from "../../../src/gpu/kernels/attention.ts";
import * as ref from "../../../src/reference/ops.ts";
import type { Binding } from "../../../src/gpu/recorder.ts";
import { context, f32, freeTensors, random, read, readRaw, run, tensor, expectClose } from "./harness.ts";

const attention = await createAttentionKernels(context);
afterAll(freeTensors);

type Shape = readonly [B: number, T: number, C: number, NH: number];

/** Outputs start as garbage, so a kernel that skips an element (say, above the diagonal) is caught. */
const garbage = (n: number) => tensor(new Float32Array(n).fill(123.25));

function forwardOnGpu([B, T, C, NH]: Shape, qkv: Binding) {
  const out = garbage(B * T * C), att = garbage(B * NH * T * T);
  run((r) => attention.forward(r, { out, att, qkv, B, T, C, NH }));
  return { out, att };
}

function backwardOnGpu([B, T, C, NH]: Shape, qkv: Binding, att: Binding, dout: Binding) {
  const dqkv = garbage(B * T * 3 * C), datt = garbage(B * NH * T * T);
  run((r) => attention.backward(r, { dqkv, datt, dout, qkv, att, B, T, C, NH }));
  return dqkv;
}

// T is 1, below, at and past the 64-row block (and the 16-step), and not a multiple of them, up to GPT-2's 1024;
// head sizes 8, 16, 32, 48, 64, 96 cover every columns-per-thread variant, full and partial, and several column
// blocks per head; up to 8 heads side by side.
// The last shape has more than 65535 softmax rows (a folded grid) and 1025 heads in the grid's z dimension.
const shapes: Shape[] = [
  [1, 1, 8, 1], [2, 3, 16, 2], [2, 17, 32, 2], [1, 64, 128, 2], [2, 100, 64, 4], [1, 33, 48, 6], [1, 130, 64, 2],
  [1, 70, 96, 2], [1, 20, 192, 2], [1, 1024, 64, 1], [1025, 64, 8, 1],
];
const label = (s: Shape) => `B=${s[0]} T=${s[1]} C=${s[2]} NH=${s[3]} (hs=${s[2] / s[3]})`;

// Relative error (max |gpu − ref| / max |ref|) below 1e-5 for out and att, and for dqkv below 1e-4 (sums over T).
test.each(shapes.map((s) => [label(s), s] as const))("forward %s matches the float64 reference", async (_, shape) => {
  const [B, T, C, NH] = shape;
  const qkv = random(B * T * 3 * C, T + C, -2, 2);
  const got = forwardOnGpu(shape, tensor(qkv));
  const want = ref.attentionForward(qkv, B, T, C, NH);
  const att = await read(got.att);
  expectClose(att, want.att, 1e-5, "att");
  expectClose(await read(got.out), want.out, 1e-5, "out");
  // exactly zero above the diagonal (the reference has exact zeros there, closeness alone would not show it)
  for (let row = 0; row < B * NH * T; row++) {
    const i = row % T;
    expect(att.subarray(row * T + i + 1, (row + 1) * T).every((x) => x === 0)).toBe(true);
  }
});

test.each(shapes.map((s) => [label(s), s] as const))("backward %s matches the float64 reference", async (_, shape) => {
  const [B, T, C, NH] = shape;
  const qkv = random(B * T * 3 * C, 2 * T + C, -2, 2), dout = random(B * T * C, 3 * T + C);
  const att = f32(ref.attentionForward(qkv, B, T, C, NH).att); // the probabilities a forward pass saves
  const dqkv = backwardOnGpu(shape, tensor(qkv), tensor(att), tensor(dout));
  expectClose(await read(dqkv), ref.attentionBackward(dout, qkv, att, B, T, C, NH), 1e-4, "dqkv");
});

test("forward and backward are bit-for-bit deterministic", async () => {
  const shape: Shape = [2, 37, 64, 2];
  const [B, T, C] = shape;
  const qkv = tensor(random(B * T * 3 * C, 5)), dout = tensor(random(B * T * C, 6));
  const passes = [0, 1].map(() => {
    const { out, att } = forwardOnGpu(shape, qkv);
    return { out, att, dqkv: backwardOnGpu(shape, qkv, att, dout) };
  });
  for (const key of ["out", "att", "dqkv"] as const) {
    expect(await readRaw(passes[1][key])).toEqual(await readRaw(passes[0][key]));
  }
});

test("large logits: finite probabilities that sum to one, finite outputs and gradients", async () => {
  const shape: Shape = [1, 50, 32, 2];
  const [B, T, C, NH] = shape;
  // |q·k|/√hs reaches ~3e4: exp without subtracting the row max would overflow f32
  const qkv = tensor(random(B * T * 3 * C, 8, -150, 150));
  const { out, att } = forwardOnGpu(shape, qkv);
  const dqkv = backwardOnGpu(shape, qkv, att, tensor(random(B * T * C, 9)));
  const probs = await read(att);
  for (let row = 0; row < B * NH * T; row++) {
    const sum = probs.subarray(row * T, (row + 1) * T).reduce((a, x) => a + x, 0);
    expect(Math.abs(sum - 1)).toBeLessThan(1e-5);
  }
  for (const tensorOut of [await read(out), await read(dqkv)]) expect(tensorOut.every(Number.isFinite)).toBe(true);
});

test("C not divisible by NH is refused", () => {
  expect(() => forwardOnGpu([1, 4, 10, 3], tensor(new Float32Array(120)))).toThrow(/multiple/);
});
