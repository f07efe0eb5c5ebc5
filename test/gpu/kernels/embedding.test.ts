import { afterAll, expect, test } from "bun:test";
import { createEmbeddingKernels, groupByToken } from "../../../src/gpu/kernels/embedding.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, f32, freeTensors, random, randomInts, read, readRaw, run, tensor, expectClose, zeros } from "./harness.ts";

const embedding = await createEmbeddingKernels(context);
afterAll(freeTensors);

const add = (a: Float64Array, b: Float64Array) => a.map((x, i) => x + b[i]);

test("groupByToken lists each distinct token once with its positions in ascending order", () => {
  const groups = groupByToken(Uint32Array.from([5, 2, 5, 5, 0, 2]));
  expect(Array.from(groups.tokens)).toEqual([0, 2, 5]);
  expect(Array.from(groups.offsets)).toEqual([0, 1, 3, 6]);
  expect(Array.from(groups.positions)).toEqual([4, 1, 5, 0, 2, 3]);
});

test("groupByToken on a random batch with large token ids is a partition by token", () => {
  const batch = randomInts(5000, 50257, 3);
  const { tokens, offsets, positions } = groupByToken(batch);
  expect(offsets.length).toBe(tokens.length + 1);
  expect(offsets[tokens.length]).toBe(batch.length);
  expect(new Set(positions).size).toBe(batch.length);
  for (let u = 0; u < tokens.length; u++) {
    if (u > 0) expect(tokens[u]).toBeGreaterThan(tokens[u - 1]);
    for (let k = offsets[u]; k < offsets[u + 1]; k++) {
      expect(batch[positions[k]]).toBe(tokens[u]);
      if (k > offsets[u]) expect(positions[k]).toBeGreaterThan(positions[k - 1]);
    }
  }
});

// An f32 add is exactly rounded: the forward must equal the float64 sum rounded to f32, bit for bit.
const forwardShapes = [[1, 1, 1, 1], [2, 17, 33, 50], [3, 64, 96, 1000]];
test.each(forwardShapes)("forward B=%d T=%d C=%d V=%d is wte[token] + wpe[t]", async (B, T, C, V) => {
  const tokens = randomInts(B * T, V, B + T), wte = random(V * C, 1), wpe = random(T * C, 2);
  const out = zeros(B * T * C);
  run((r) => embedding.forward(r, { out, tokens: tensor(tokens), wte: tensor(wte), wpe: tensor(wpe), B, T, C }));
  expect(await read(out)).toEqual(f32(ref.embeddingForward(tokens, wte, wpe, B, T, C)));
});

type Start = { dwte: Float64Array; dwpe: Float64Array };
const randomStart = (V: number, maxT: number, C: number): Start => ({ dwte: random(V * C, 5), dwpe: random(maxT * C, 6) });

async function backwardOnGpu(
  tokens: Uint32Array, B: number, T: number, C: number, V: number, maxT: number, start = randomStart(V, maxT, C),
) {
  const dout = random(B * T * C, B * T + C);
  const buckets = embedding.createBuckets(B * T + 5);
  buckets.update(tokens);
  const dwte = tensor(start.dwte), dwpe = tensor(start.dwpe);
  run((r) => embedding.backward(r, { dwte, dwpe, dout: tensor(dout), buckets, B, T, C }));
  return { dwte, dwpe, start, want: ref.embeddingBackward(dout, tokens, B, T, C, V, maxT) };
}

// dwte and dwpe accumulate (+=) into non-zero values; relative error below 1e-4 (sums over positions). V = 5 makes
// every token repeat many times; dwpe has maxT > T rows, the rows past T must keep their values.
test.each([[1, 1, 1, 1], [2, 17, 33, 5], [4, 64, 96, 5], [3, 40, 20, 300]])(
  "backward B=%d T=%d C=%d V=%d adds each token's and position's gradient sums",
  async (B, T, C, V) => {
    const got = await backwardOnGpu(randomInts(B * T, V, 9 * T), B, T, C, V, T + 3);
    expectClose(await read(got.dwte), add(got.start.dwte, got.want.dwte), 1e-4, "dwte");
    expectClose(await read(got.dwpe), add(got.start.dwpe, got.want.dwpe), 1e-4, "dwpe");
  },
);

test("backward with one token at every position sums all of them into its row", async () => {
  const [B, T, C, V] = [4, 50, 8, 3];
  const start = { dwte: new Float64Array(V * C), dwpe: new Float64Array(T * C) };
  const got = await backwardOnGpu(new Uint32Array(B * T).fill(1), B, T, C, V, T, start);
  const dwte = await read(got.dwte);
  expect(dwte.subarray(0, C).every((x) => x === 0) && dwte.subarray(2 * C).every((x) => x === 0)).toBe(true);
  expectClose(dwte, got.want.dwte, 1e-4, "dwte");
});

test("backward with more distinct tokens than 65535 (a folded grid of workgroups) reaches every one", async () => {
  const [B, T, C, V] = [2, 35_000, 2, 70_001];
  const tokens = Uint32Array.from({ length: B * T }, (_, i) => (i * 7919) % V); // all distinct
  const got = await backwardOnGpu(tokens, B, T, C, V, T);
  expectClose(await read(got.dwte), add(got.start.dwte, got.want.dwte), 1e-4, "dwte");
});

test("backward is bit-for-bit deterministic", async () => {
  const [B, T, C, V] = [4, 64, 40, 7];
  const tokens = randomInts(B * T, V, 1);
  const runs = await Promise.all([0, 1].map(() => backwardOnGpu(tokens, B, T, C, V, T)));
  expect(await readRaw(runs[1].dwte)).toEqual(await readRaw(runs[0].dwte));
  expect(await readRaw(runs[1].dwpe)).toEqual(await readRaw(runs[0].dwpe));
});

test("buckets are reusable across batches and refuse a batch of the wrong size", async () => {
  const [B, T, C, V] = [2, 9, 4, 6];
  const buckets = embedding.createBuckets(B * T);
  const dwte = zeros(V * C), dwpe = zeros(T * C), dout = random(B * T * C, 4);
  const second = randomInts(B * T, V, 2);
  buckets.update(randomInts(B * T, V, 1));
  buckets.update(second); // replaces the first grouping
  run((r) => embedding.backward(r, { dwte, dwpe, dout: tensor(dout), buckets, B, T, C }));
  expectClose(await read(dwte), ref.embeddingBackward(dout, second, B, T, C, V, T).dwte, 1e-4, "dwte");
  expect(() => buckets.update(new Uint32Array(B * T + 1))).toThrow(/exceed/);
  expect(() => run((r) => embedding.backward(r, { dwte, dwpe, dout: tensor(dout), buckets, B: 1, T, C }))).toThrow(/update/);
});

// A binding limit below the table's size: wte / dwte are bound in vocabulary ranges (V = 1000, C = 24: 96 rows of
// 96 bytes per range under a 9,600-byte limit, 11 ranges, the last of 40 rows); the results must not change.
test("forward and backward with the table split into vocabulary ranges equal the unsplit results", async () => {
  const split = await createEmbeddingKernels({ ...context, maxBindingBytes: 9600 });
  const [B, T, C, V] = [3, 50, 24, 1000];
  const tokens = randomInts(B * T, V, 21), wte = random(V * C, 22), wpe = random(T * C, 23);
  tokens.set([0, 95, 96, 999, 960, 959]); // range edges
  const out = zeros(B * T * C);
  run((r) => split.forward(r, { out, tokens: tensor(tokens), wte: tensor(wte), wpe: tensor(wpe), B, T, C }));
  expect(await read(out)).toEqual(f32(ref.embeddingForward(tokens, wte, wpe, B, T, C)));
  const dout = random(B * T * C, 24), start = random(V * C, 25);
  const buckets = split.createBuckets(B * T);
  buckets.update(tokens);
  const dwte = tensor(start), dwpe = zeros(T * C);
  run((r) => split.backward(r, { dwte, dwpe, dout: tensor(dout), buckets, scale: 1.5, B, T, C }));
  const want = ref.embeddingBackward(dout, tokens, B, T, C, V, T, 1.5);
  expectClose(await read(dwte), add(start, want.dwte), 1e-4, "dwte");
  expectClose(await read(dwpe), want.dwpe, 1e-4, "dwpe");
});
