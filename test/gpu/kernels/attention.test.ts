import { afterAll, expect, test } from "bun:test";
import { createAttentionKernels } from "../../../src/gpu/kernels/attention.ts";
import type { TokenView } from "../../../src/gpu/kernels/index.ts";
import * as ref from "../../../src/reference/ops.ts";
import type { Binding } from "../../../src/gpu/recorder.ts";
import { context, f32, freeTensors, random, read, readRaw, run, tensor, expectClose } from "./harness.ts";

const attention = await createAttentionKernels(context);
afterAll(freeTensors);

/** Query heads NH, key/value heads KVH (NH = KVH: multi-head; KVH = 1: multi-query), head size hs. */
type Shape = readonly [B: number, T: number, NH: number, KVH: number, hs: number];

/** Outputs start as garbage, so a kernel that skips an element (say, above the diagonal) is caught. */
const garbage = (n: number) => tensor(new Float32Array(n).fill(123.25));
const width = ([, , NH, KVH, hs]: Shape) => (NH + 2 * KVH) * hs;

/** q, k, v views of a fused [B,T,(NH+2·KVH)·hs] tensor, as the model reads them. */
function views(shape: Shape, fused: Binding): { q: TokenView; k: TokenView; v: TokenView } {
  const [, , NH, KVH, hs] = shape;
  const stride = width(shape);
  return { q: { binding: fused, stride, offset: 0 }, k: { binding: fused, stride, offset: NH * hs }, v: { binding: fused, stride, offset: (NH + KVH) * hs } };
}

const dims = ([B, T, NH, KVH, hs]: Shape) => ({ B, T, NH, KVH, hs });

function forwardOnGpu(shape: Shape, qkv: Binding) {
  const [B, T, NH, , hs] = shape;
  const out = garbage(B * T * NH * hs), att = garbage(B * NH * T * T);
  run((r) => attention.forward(r, { out, att, ...views(shape, qkv), ...dims(shape) }));
  return { out, att };
}

function backwardOnGpu(shape: Shape, qkv: Binding, att: Binding, dout: Binding) {
  const [B, T, NH] = shape;
  const dqkv = garbage(B * T * width(shape)), datt = garbage(B * NH * T * T);
  const d = views(shape, dqkv);
  run((r) => attention.backward(r, { dq: d.q, dk: d.k, dv: d.v, datt, dout, ...views(shape, qkv), att, ...dims(shape) }));
  return dqkv;
}

// T is 1, below, at and past the 64-row block (and the 16-step), and not a multiple of them, up to GPT-2's 1024;
// head sizes 8, 16, 24, 32, 40, 48, 64, 96 cover every columns-per-thread variant, full and partial, and several
// column blocks per head; up to 8 heads side by side; grouped key/value heads 6:2, 4:1 (multi-query) and 8:2.
// The last multi-head shape has more than 65535 softmax rows (a folded grid) and 1025 heads in the grid's z.
const shapes: Shape[] = [
  [1, 1, 1, 1, 8], [2, 3, 2, 2, 8], [2, 17, 2, 2, 16], [1, 64, 2, 2, 64], [2, 100, 4, 4, 16], [1, 33, 6, 6, 8], [1, 130, 2, 2, 32],
  [1, 70, 2, 2, 48], [1, 20, 2, 2, 96], [1, 1024, 1, 1, 64], [1025, 64, 1, 1, 8],
  [2, 17, 6, 2, 16], [1, 33, 4, 1, 24], [1, 70, 8, 2, 40],
];
const label = (s: Shape) => `B=${s[0]} T=${s[1]} NH=${s[2]} KVH=${s[3]} hs=${s[4]}`;

test.each(shapes.map((s) => [label(s), s] as const))("forward %s matches the float64 reference", async (_, shape) => {
  const [B, T, NH, , hs] = shape;
  const qkv = random(B * T * width(shape), T + hs, -2, 2);
  const got = forwardOnGpu(shape, tensor(qkv));
  const want = ref.groupedAttentionForward(qkv, dims(shape));
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
  const [B, T, NH, , hs] = shape;
  const qkv = random(B * T * width(shape), 2 * T + hs, -2, 2), dout = random(B * T * NH * hs, 3 * T + hs);
  const att = f32(ref.groupedAttentionForward(qkv, dims(shape)).att); // the probabilities a forward pass saves
  const dqkv = backwardOnGpu(shape, tensor(qkv), tensor(att), tensor(dout));
  expectClose(await read(dqkv), ref.groupedAttentionBackward(dout, qkv, att, dims(shape)), 1e-4, "dqkv");
});

test("forward and backward are bit-for-bit deterministic", async () => {
  const shape: Shape = [2, 37, 4, 2, 32];
  const [B, T, NH, , hs] = shape;
  const qkv = tensor(random(B * T * width(shape), 5)), dout = tensor(random(B * T * NH * hs, 6));
  const passes = [0, 1].map(() => {
    const { out, att } = forwardOnGpu(shape, qkv);
    return { out, att, dqkv: backwardOnGpu(shape, qkv, att, dout) };
  });
  for (const key of ["out", "att", "dqkv"] as const) {
    expect(await readRaw(passes[1][key])).toEqual(await readRaw(passes[0][key]));
  }
});

test("large logits: finite probabilities that sum to one, finite outputs and gradients", async () => {
  const shape: Shape = [1, 50, 2, 2, 16];
  const [B, T, NH, , hs] = shape;
  // |q·k|/√hs reaches ~3e4: exp without subtracting the row max would overflow f32
  const qkv = tensor(random(B * T * width(shape), 8, -150, 150));
  const { out, att } = forwardOnGpu(shape, qkv);
  const dqkv = backwardOnGpu(shape, qkv, att, tensor(random(B * T * NH * hs, 9)));
  const probs = await read(att);
  for (let row = 0; row < B * NH * T; row++) {
    const sum = probs.subarray(row * T, (row + 1) * T).reduce((a, x) => a + x, 0);
    expect(Math.abs(sum - 1)).toBeLessThan(1e-5);
  }
  for (const tensorOut of [await read(out), await read(dqkv)]) expect(tensorOut.every(Number.isFinite)).toBe(true);
});

test("NH not a multiple of KVH is refused", () => {
  expect(() => forwardOnGpu([1, 4, 3, 2, 8], tensor(new Float32Array(4 * 7 * 8)))).toThrow(/multiple/);
});
