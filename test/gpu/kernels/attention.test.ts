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
type Options = ref.AttentionOptions;

/** Outputs start as garbage, so a kernel that skips an element is caught. */
const garbage = (n: number) => tensor(new Float32Array(n).fill(123.25));
const width = ([, , NH, KVH, hs]: Shape) => (NH + 2 * KVH) * hs;

/** q, k, v views of a fused [B,T,(NH+2·KVH)·hs] tensor, as the model reads them. */
function views(shape: Shape, fused: Binding): { q: TokenView; k: TokenView; v: TokenView } {
  const [, , NH, KVH, hs] = shape;
  const stride = width(shape);
  return { q: { binding: fused, stride, offset: 0 }, k: { binding: fused, stride, offset: NH * hs }, v: { binding: fused, stride, offset: (NH + KVH) * hs } };
}

const dims = ([B, T, NH, KVH, hs]: Shape) => ({ B, T, NH, KVH, hs });

function forwardOnGpu(shape: Shape, qkv: Binding, options: Options = {}) {
  const [B, T, NH, , hs] = shape;
  const out = garbage(B * T * NH * hs), stats = garbage(2 * B * NH * T);
  run((r) => attention.forward(r, { out, stats, ...views(shape, qkv), ...dims(shape), ...options }));
  return { out, stats };
}

/** dqkv in the fused layout, with dq, dk, dv written as views of one buffer (the model without rotary). */
function backwardOnGpu(shape: Shape, qkv: Binding, saved: { stats: Binding }, dout: Binding, options: Options = {}) {
  const [B, T, NH] = shape;
  const dqkv = garbage(B * T * width(shape)), delta = garbage(B * NH * T);
  const d = views(shape, dqkv);
  run((r) => attention.backward(r, { dq: d.q, dk: d.k, dv: d.v, dout, stats: saved.stats, delta, ...views(shape, qkv), ...dims(shape), ...options }));
  return dqkv;
}

/** The GPU's backward from the reference's softmax statistics (rounded to f32) against the reference's backward. */
async function checkBackward(shape: Shape, seed: number, options: Options = {}, tolerance = 1e-4) {
  const [B, T, NH, , hs] = shape;
  const qkv = random(B * T * width(shape), seed, -2, 2), dout = random(B * T * NH * hs, seed + 1);
  const want = ref.groupedAttentionForward(qkv, dims(shape), options);
  const saved = { stats: tensor(f32(want.stats)) }; // what a forward pass saves
  const dqkv = backwardOnGpu(shape, tensor(qkv), saved, tensor(dout), options);
  expectClose(await read(dqkv), ref.groupedAttentionBackward(dout, qkv, f32(want.att), dims(shape), options), tolerance, "dqkv");
}

async function checkForward(shape: Shape, seed: number, options: Options = {}) {
  const qkv = random(shape[0] * shape[1] * width(shape), seed, -2, 2);
  const got = forwardOnGpu(shape, tensor(qkv), options);
  const want = ref.groupedAttentionForward(qkv, dims(shape), options);
  expectClose(await read(got.out), want.out, 1e-5, "out");
  expectClose(await read(got.stats), want.stats, 1e-5, "stats");
}

// T is 1, below, at and past the 32-row workgroup and the 8-row step, and not a multiple of them (13, 65, 130), up
// to GPT-2's 1024; head sizes 5 … 256 (Gemma's), multiples of 8 or not (5, 24, 80); up to 8 heads side by side;
// grouped key/value heads 6:2, 4:1, 8:2 and multi-query 8:1; 1025 batch rows in the grid's z.
const shapes: Shape[] = [
  [1, 1, 1, 1, 8], [2, 3, 2, 2, 8], [2, 17, 2, 2, 16], [1, 64, 2, 2, 64], [2, 100, 4, 4, 16], [1, 33, 6, 6, 8], [1, 130, 2, 2, 32],
  [1, 70, 2, 2, 48], [1, 20, 2, 2, 96], [1, 1024, 1, 1, 64], [1025, 64, 1, 1, 8],
  [2, 17, 6, 2, 16], [1, 33, 4, 1, 24], [1, 70, 8, 2, 40],
  [2, 13, 6, 2, 24], [1, 65, 4, 1, 80], [1, 130, 8, 1, 16], [1, 13, 2, 2, 128], [1, 9, 2, 1, 256], [1, 65, 2, 2, 5],
];
const label = (s: Shape) => `B=${s[0]} T=${s[1]} NH=${s[2]} KVH=${s[3]} hs=${s[4]}`;

test.each(shapes.map((s) => [label(s), s] as const))("forward %s matches the float64 reference", async (_, shape) => {
  await checkForward(shape, shape[1] + shape[4]);
});

test.each(shapes.map((s) => [label(s), s] as const))("backward %s matches the float64 reference", async (_, shape) => {
  await checkBackward(shape, 2 * shape[1] + shape[4]);
});

// Gemma 2: scores soft-capped (a cap small enough that tanh bends most of them) with its own scale; a custom scale alone.
const optionCases: [string, Shape, Options][] = [
  ["soft-capped scores, custom scale, GQA 4:2, T=37 hs=24", [2, 37, 4, 2, 24], { softcap: 1.5, scale: 0.4 }],
  ["soft-capped scores, MQA 3:1, T=65 hs=80", [1, 65, 3, 1, 80], { softcap: 2 }],
  ["custom scale, GQA 6:2, T=130 hs=16", [1, 130, 6, 2, 16], { scale: 0.05 }],
];
test.each(optionCases)("%s: forward and backward match the float64 reference", async (_, shape, options) => {
  await checkForward(shape, 11, options);
  await checkBackward(shape, 12, options);
});

test("dq, dk and dv in three different buffers (the rotary model's layout) match the fused layout", async () => {
  const shape: Shape = [2, 29, 4, 2, 24];
  const [B, T, NH, KVH, hs] = shape;
  const qkv = tensor(random(B * T * width(shape), 21, -2, 2)), dout = tensor(random(B * T * NH * hs, 22));
  const saved = forwardOnGpu(shape, qkv);
  const fused = await read(backwardOnGpu(shape, qkv, saved, dout));
  const dq = garbage(B * T * NH * hs), dk = garbage(B * T * KVH * hs), dv = garbage(B * T * KVH * hs), delta = garbage(B * NH * T);
  run((r) => attention.backward(r, {
    dq: { binding: dq, stride: NH * hs, offset: 0 }, dk: { binding: dk, stride: KVH * hs, offset: 0 }, dv: { binding: dv, stride: KVH * hs, offset: 0 },
    dout, stats: saved.stats, delta, ...views(shape, qkv), ...dims(shape),
  }));
  const [gq, gk, gv] = [await read(dq), await read(dk), await read(dv)];
  const W = width(shape);
  for (let n = 0; n < B * T; n++) {
    expect(Array.from(gq.subarray(n * NH * hs, (n + 1) * NH * hs))).toEqual(Array.from(fused.subarray(n * W, n * W + NH * hs)));
    expect(Array.from(gk.subarray(n * KVH * hs, (n + 1) * KVH * hs))).toEqual(Array.from(fused.subarray(n * W + NH * hs, n * W + (NH + KVH) * hs)));
    expect(Array.from(gv.subarray(n * KVH * hs, (n + 1) * KVH * hs))).toEqual(Array.from(fused.subarray(n * W + (NH + KVH) * hs, (n + 1) * W)));
  }
});

test("the GPU's own forward feeds its backward: gradients match the reference end to end", async () => {
  const shape: Shape = [2, 45, 6, 2, 24];
  const [B, T, NH, , hs] = shape;
  const options = { softcap: 3 };
  const qkv = random(B * T * width(shape), 31, -2, 2), dout = random(B * T * NH * hs, 32);
  const saved = forwardOnGpu(shape, tensor(qkv), options);
  const dqkv = backwardOnGpu(shape, tensor(qkv), saved, tensor(dout), options);
  const want = ref.groupedAttentionForward(qkv, dims(shape), options);
  expectClose(await read(dqkv), ref.groupedAttentionBackward(dout, qkv, want.att, dims(shape), options), 1e-4, "dqkv");
});

test("forward and backward are bit-for-bit deterministic", async () => {
  const shape: Shape = [2, 37, 4, 2, 32];
  const [B, T, NH, , hs] = shape;
  const qkv = tensor(random(B * T * width(shape), 5)), dout = tensor(random(B * T * NH * hs, 6));
  const passes = [0, 1].map(() => {
    const saved = forwardOnGpu(shape, qkv);
    return { ...saved, dqkv: backwardOnGpu(shape, qkv, saved, dout) };
  });
  for (const key of ["out", "stats", "dqkv"] as const) {
    expect(await readRaw(passes[1][key])).toEqual(await readRaw(passes[0][key]));
  }
});

test("large logits: finite outputs and gradients that match the reference", async () => {
  const shape: Shape = [1, 50, 2, 2, 16];
  const [B, T, NH, , hs] = shape;
  // |q·k|/√hs reaches ~3e4: exp without subtracting the running max would overflow f32
  const qkv = random(B * T * width(shape), 8, -150, 150), dout = random(B * T * NH * hs, 9);
  const saved = forwardOnGpu(shape, tensor(qkv));
  const dqkv = await read(backwardOnGpu(shape, tensor(qkv), saved, tensor(dout)));
  const out = await read(saved.out);
  for (const values of [out, await read(saved.stats), dqkv]) expect(values.every(Number.isFinite)).toBe(true);
  const want = ref.groupedAttentionForward(qkv, dims(shape));
  expectClose(out, want.out, 1e-5, "out");
});

test("NH not a multiple of KVH, and a head past 256, are refused", () => {
  expect(() => forwardOnGpu([1, 4, 3, 2, 8], tensor(new Float32Array(4 * 7 * 8)))).toThrow(/multiple/);
  expect(() => forwardOnGpu([1, 2, 1, 1, 264], tensor(new Float32Array(2 * 3 * 264)))).toThrow(/head size 264/);
});
