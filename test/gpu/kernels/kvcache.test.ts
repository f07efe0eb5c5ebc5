/**
 * The key/value-cache kernels (shaders/kvcache.wgsl) against float64 references: attend on caches of awkward shapes
 * (GQA 6:2, MQA 4:1, MHA; head sizes 8 … 256; positions 0, past one 64-key tile and at the row's end; Gemma 2's
 * scale and soft-capping), append into the right slots only, append + attend over a whole sequence equal to the
 * training attention, rotary and learned positions at per-token positions, and the gather of rows.
 */
import { afterAll, expect, test } from "bun:test";
import { createKVCacheKernels } from "../../../src/gpu/kernels/kvcache.ts";
import { createRotaryKernels, inverseFrequencies, rotaryTable } from "../../../src/gpu/kernels/rotary.ts";
import { denseView } from "../../../src/gpu/kernels/index.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, expectClose, freeTensors, random, randomInts, read, run, tensor, zeros } from "./harness.ts";

const kv = await createKVCacheKernels(context);
const rotary = await createRotaryKernels(context);
afterAll(freeTensors);

const garbage = (n: number) => tensor(new Float32Array(n).fill(123.25));

type Case = { rows: number; maxLength: number; NH: number; KVH: number; hd: number; positions: number[]; rowOf: number[]; scale?: number; softcap?: number };
const cases: Case[] = [
  { rows: 1, maxLength: 1, NH: 1, KVH: 1, hd: 8, positions: [0], rowOf: [0] },
  { rows: 3, maxLength: 70, NH: 6, KVH: 2, hd: 8, positions: [0, 69, 64, 63, 13], rowOf: [2, 0, 1, 1, 2] },
  { rows: 2, maxLength: 130, NH: 4, KVH: 1, hd: 24, positions: [129, 7], rowOf: [1, 0] },
  { rows: 2, maxLength: 33, NH: 2, KVH: 2, hd: 256, positions: [32, 5, 1], rowOf: [0, 1, 1] },
  { rows: 2, maxLength: 20, NH: 4, KVH: 2, hd: 12, positions: [19, 3], rowOf: [0, 1], scale: 0.25, softcap: 2 },
];
const label = (c: Case) => `rows=${c.rows} L=${c.maxLength} NH=${c.NH} KVH=${c.KVH} hd=${c.hd}${c.softcap ? " softcap" : ""} positions=${c.positions}`;

test.each(cases.map((c) => [label(c), c] as const))("attend %s matches the float64 reference", async (_, c) => {
  const N = c.positions.length;
  const cacheSize = c.rows * c.maxLength * c.KVH * c.hd;
  const q = random(N * c.NH * c.hd, N + c.hd, -2, 2);
  const kCache = random(cacheSize, 1 + c.maxLength, -2, 2), vCache = random(cacheSize, 2 + c.hd);
  const out = garbage(N * c.NH * c.hd);
  run((r) => kv.attend(r, {
    out, q: denseView(tensor(q), c.NH * c.hd), kCache: tensor(kCache), vCache: tensor(vCache), rows: tensor(Uint32Array.from(c.rowOf)), positions: tensor(Uint32Array.from(c.positions)),
    N, NH: c.NH, KVH: c.KVH, hd: c.hd, maxLength: c.maxLength, scale: c.scale, softcap: c.softcap,
  }));
  const want = ref.cachedAttention(q, kCache, vCache, c.rowOf, c.positions, { NH: c.NH, KVH: c.KVH, hs: c.hd, maxLength: c.maxLength }, { scale: c.scale, softcap: c.softcap });
  expectClose(await read(out), want, 1e-5, "out");
});

test("append writes each token's k and v (read through qkv views) into its row and position, nothing else", async () => {
  const rows = 3, maxLength = 5, width = 6, W = 20, kOffset = 4, vOffset = 10;
  const N = 4, rowOf = [2, 0, 2, 1], positions = [0, 4, 1, 3];
  const qkv = random(N * W, 3);
  const kCache = garbage(rows * maxLength * width), vCache = garbage(rows * maxLength * width);
  run((r) => kv.append(r, {
    kCache, vCache, k: { binding: tensor(qkv), stride: W, offset: kOffset }, v: { binding: tensor(qkv), stride: W, offset: vOffset },
    rows: tensor(Uint32Array.from(rowOf)), positions: tensor(Uint32Array.from(positions)), N, width, maxLength,
  }));
  const wantK = new Float64Array(rows * maxLength * width).fill(123.25), wantV = Float64Array.from(wantK);
  for (let n = 0; n < N; n++) {
    const slot = (rowOf[n] * maxLength + positions[n]) * width;
    for (let e = 0; e < width; e++) {
      wantK[slot + e] = qkv[n * W + kOffset + e];
      wantV[slot + e] = qkv[n * W + vOffset + e];
    }
  }
  expect(Array.from(await read(kCache))).toEqual(Array.from(wantK));
  expect(Array.from(await read(vCache))).toEqual(Array.from(wantV));
});

test("append + attend over every prefix of two sequences is the training attention (causal, GQA 4:2)", async () => {
  const B = 2, T = 37, NH = 4, KVH = 2, hd = 16, maxLength = 40;
  const W = (NH + 2 * KVH) * hd;
  const qkv = random(B * T * W, 11, -2, 2);
  const rowOf = Array.from({ length: B * T }, (_, n) => Math.floor(n / T)), positions = Array.from({ length: B * T }, (_, n) => n % T);
  const kCache = garbage(B * maxLength * KVH * hd), vCache = garbage(B * maxLength * KVH * hd), out = garbage(B * T * NH * hd);
  const fused = tensor(qkv), rows = tensor(Uint32Array.from(rowOf)), at = tensor(Uint32Array.from(positions));
  run((r) => {
    kv.append(r, { kCache, vCache, k: { binding: fused, stride: W, offset: NH * hd }, v: { binding: fused, stride: W, offset: (NH + KVH) * hd }, rows, positions: at, N: B * T, width: KVH * hd, maxLength });
    kv.attend(r, { out, q: { binding: fused, stride: W, offset: 0 }, kCache, vCache, rows, positions: at, N: B * T, NH, KVH, hd, maxLength });
  });
  expectClose(await read(out), ref.groupedAttentionForward(qkv, { B, T, NH, KVH, hs: hd }).out, 1e-5, "out");
});

test("rotary at per-token positions matches the reference; without positions it is unchanged (n % T)", async () => {
  const N = 5, H = 3, hd = 10, R = 6, T = 50;
  const positions = [49, 0, 17, 3, 17];
  const x = random(N * H * hd, 5, -2, 2);
  const table = tensor(rotaryTable(T, R, 10000, { type: "none" }));
  const atPositions = zeros(N * H * hd), plain = zeros(N * H * hd);
  const shape = { table, N, T, H, headDim: hd, rotaryDim: R };
  run((r) => {
    rotary.forward(r, { out: denseView(atPositions, H * hd), inp: denseView(tensor(x), H * hd), ...shape, positions: tensor(Uint32Array.from(positions)) });
    rotary.forward(r, { out: denseView(plain, H * hd), inp: denseView(tensor(x), H * hd), ...shape });
  });
  const inv = inverseFrequencies(R, 10000, { type: "none" });
  // the reference rotates heads of R dims: lay the partial heads out as the rotary test does
  const partial = (at?: number[]) => {
    const heads = new Float64Array(N * H * R);
    for (let i = 0; i < N * H; i++) heads.set(x.subarray(i * hd, i * hd + R), i * R);
    const rotated = ref.rotary(heads, N, T, H, R, R, inv, 1, at);
    const result = Float64Array.from(x);
    for (let i = 0; i < N * H; i++) result.set(rotated.subarray(i * R, (i + 1) * R), i * hd);
    return result;
  };
  expectClose(await read(atPositions), partial(positions), 1e-5, "at positions");
  expectClose(await read(plain), partial(), 1e-5, "n % T");
});

test("addPositions adds wpe rows at per-token positions; gather picks rows by index", async () => {
  const N = 4, C = 70, P = 9;
  const x = random(N * C, 6), wpe = random(P * C, 7);
  const positions = [8, 0, 3, 8];
  const out = tensor(x);
  const index = randomInts(3, N, 8);
  const gathered = garbage(3 * C);
  run((r) => {
    kv.addPositions(r, { out, wpe: tensor(wpe), positions: tensor(Uint32Array.from(positions)), N, C });
    kv.gather(r, { out: gathered, x: out, index: tensor(index), n: 3, C });
  });
  const want = Float64Array.from(x, (value, i) => value + wpe[positions[Math.floor(i / C)] * C + (i % C)]);
  expectClose(await read(out), want, 1e-6, "addPositions");
  const wantGathered = Float64Array.from({ length: 3 * C }, (_, i) => want[index[Math.floor(i / C)] * C + (i % C)]);
  expectClose(await read(gathered), wantGathered, 1e-6, "gather");
});
