import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { createCrossEntropyKernels, headVocabChunks, headWorkspaceFloats } from "../../../src/gpu/kernels/crossentropy.ts";
import { createMatmulKernels } from "../../../src/gpu/kernels/matmul.ts";
import type { CrossEntropyKernels, HeadWorkspace } from "../../../src/gpu/kernels/index.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, expectClose, freeTensors, random, randomInts, read, readRaw, Rng, run, tensor, zeros } from "./harness.ts";

setDefaultTimeout(120_000); // the software adapter shares two CPU cores with everything else

const matmul = await createMatmulKernels(context);
const unlimited = await createCrossEntropyKernels(context, matmul);
// V = 1000, C = 24: a 24,576-byte binding limit splits W into vocabulary slices of 256, 256, 256 and 232 rows and
// the rows into chunks of 6 (a [1000, 6] logits chunk is 24,000 bytes)
const TINY = 256 * 24 * 4;
const tiny = await createCrossEntropyKernels({ ...context, maxBindingBytes: TINY }, matmul);
afterAll(freeTensors);

interface Case {
  N: number; V: number; C: number;
  x: Float64Array; weight: Float64Array; bias: Float64Array | null;
  targets: Uint32Array; weights: Float64Array; cap: number;
}

function makeCase(N: number, V: number, C: number, seed: number, o: { bias?: boolean; cap?: number } = {}): Case {
  const rng = new Rng(seed);
  const weights = random(N, rng, 0.5, 2).map((w, i) => (i % 3 === 1 ? 0 : w)); // every third row weighs 0
  return {
    N, V, C, cap: o.cap ?? 0,
    x: random(N * C, rng, -2, 2), weight: random(V * C, rng, -1, 1), bias: o.bias ? random(V, rng, -1, 1) : null,
    targets: randomInts(N, V, rng), weights,
  };
}

function workspace(N: number, V: number, C: number, limit = Infinity): HeadWorkspace {
  const f = headWorkspaceFloats(N, V, C, true, limit);
  return { rowChunk: f.rowChunk, x: zeros(f.x), logits: zeros(f.logits), dx: zeros(f.dx) };
}

const weightedRows = (c: Case) => Uint32Array.from(Array.from(c.weights.keys()).filter((i) => c.weights[i] !== 0));

/** Runs the fused head with gradients; dx starts as garbage (it is overwritten), dweight/dbias random (they accumulate). */
async function gpuHead(k: CrossEntropyKernels, c: Case, gradScale: number, limit = Infinity) {
  const { N, V, C } = c;
  const ws = workspace(N, V, C, limit);
  const rows = weightedRows(c);
  const start = { dweight: random(V * C, 3), dbias: random(V, 4) };
  const losses = tensor(random(N, 5)), dx = tensor(random(N * C, 6)), dweight = tensor(start.dweight), dbias = tensor(start.dbias);
  run((r) => k.head(r, {
    ws, rows: { list: tensor(rows), count: rows.length }, x: tensor(c.x), weight: tensor(c.weight), bias: c.bias ? tensor(c.bias) : undefined,
    V, C, softcap: c.cap || undefined, targets: tensor(c.targets), weights: tensor(c.weights), losses, gradScale,
    dx, dweight, dbias: c.bias ? dbias : undefined,
  }));
  return { ws, start, losses: await read(losses), dx: await read(dx), dweight: await read(dweight), dbias: await read(dbias) };
}

const plus = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);

test("the vocabulary is split into aligned slices within the limit (V = 1000 with slices of 256)", () => {
  expect(headVocabChunks(1000, 24, TINY)).toEqual([{ first: 0, count: 256 }, { first: 256, count: 256 }, { first: 512, count: 256 }, { first: 768, count: 232 }]);
  expect(headWorkspaceFloats(37, 1000, 24, true, TINY).rowChunk).toBe(6);
  expect(headVocabChunks(50257, 768, 128 << 20)).toEqual([{ first: 0, count: 43648 }, { first: 43648, count: 6609 }]);
});

// Against float64: losses within 1e-5, gradients (sums over up to 1000 vocabulary entries and 37 rows) within 1e-5
// relative to their largest element.
test.each([
  ["no bias, no cap, one chunk", 5, 77, 16, false, 0, Infinity],
  ["bias and soft-capping, one chunk", 9, 300, 20, true, 3, Infinity],
  ["V = 1000 in slices of 256, rows in chunks of 6", 37, 1000, 24, false, 0, TINY],
  ["V = 1000 chunked, with bias and soft-capping", 37, 1000, 24, true, 2.5, TINY],
] as const)("%s: losses, dx, dW and dbias match float64", async (_, N, V, C, bias, cap, limit) => {
  const c = makeCase(N, V, C, N * 31 + V, { bias, cap });
  const gradScale = 1 / 7;
  const got = await gpuHead(limit === Infinity ? unlimited : tiny, c, gradScale, limit);
  const want = ref.lmHead(c.x, c.weight, c.bias, c.targets, c.weights, N, V, C, gradScale, cap);
  expectClose(got.losses, want.losses, 1e-5, "losses");
  expectClose(got.dx, want.dx, 1e-5, "dx");
  expectClose(got.dweight, plus(got.start.dweight, want.dweight), 1e-5, "dweight");
  if (bias) expectClose(got.dbias, plus(got.start.dbias, want.dbias), 1e-5, "dbias");
  // positions of weight 0: loss and input gradient exactly 0
  for (let i = 1; i < N; i += 3) {
    expect(got.losses[i]).toBe(0);
    expect(got.dx.subarray(i * C, (i + 1) * C).every((g) => g === 0)).toBe(true);
  }
});

test("gradScale 0: losses only; dx, dW and dbias untouched", async () => {
  const c = makeCase(37, 1000, 24, 11, { bias: true });
  const got = await gpuHead(tiny, c, 0, TINY);
  expectClose(got.losses, ref.lmHead(c.x, c.weight, c.bias, c.targets, c.weights, 37, 1000, 24, 0).losses, 1e-5, "losses");
  expect(got.dweight).toEqual(got.start.dweight);
  expect(got.dbias).toEqual(got.start.dbias);
});

test("no weighted row at all: every loss 0, dx 0", async () => {
  const c = makeCase(8, 100, 16, 12);
  c.weights.fill(0);
  const got = await gpuHead(unlimited, c, 1);
  expect(got.losses.every((l) => l === 0)).toBe(true);
  expect(got.dx.every((g) => g === 0)).toBe(true);
  expect(got.dweight).toEqual(got.start.dweight);
});

test("large logits are handled by max subtraction (no overflow)", async () => {
  const c = makeCase(6, 500, 8, 13);
  c.x = c.x.map((v) => v * 100); // logits in the hundreds
  const got = await gpuHead(unlimited, c, 1);
  const want = ref.lmHead(c.x, c.weight, c.bias, c.targets, c.weights, 6, 500, 8, 1);
  expect(got.losses.every(Number.isFinite)).toBe(true);
  expectClose(got.losses, want.losses, 1e-4, "losses"); // differences of numbers in the hundreds: f32 rounding shows
  expectClose(got.dx, want.dx, 1e-4, "dx");
});

test("chunked and unchunked results are bitwise deterministic across runs", async () => {
  const c = makeCase(37, 1000, 24, 14, { bias: true, cap: 3 });
  const a = await gpuHead(tiny, c, 0.5, TINY);
  const b = await gpuHead(tiny, c, 0.5, TINY);
  expect(Float32Array.from(b.dx)).toEqual(Float32Array.from(a.dx));
  expect(Float32Array.from(b.dweight)).toEqual(Float32Array.from(a.dweight));
  expect(Float32Array.from(b.losses)).toEqual(Float32Array.from(a.losses));
});

test("logits of arbitrary rows (any order, weight 0 or not), chunked, [V, count] in the workspace", async () => {
  const c = makeCase(37, 1000, 24, 15, { bias: true, cap: 4 });
  const ws = workspace(37, 1000, 24, TINY);
  const rows = Uint32Array.from([36, 1, 0, 17, 4, 22, 9, 30]);
  const want = ref.lmHead(c.x, c.weight, c.bias, c.targets, c.weights, 37, 1000, 24, 0, 4).logits;
  const list = tensor(rows);
  for (const [first, count] of [[0, 6], [6, 2]]) {
    run((r) => tiny.logits(r, { ws, rows: { list, count: rows.length }, x: tensor(c.x), weight: tensor(c.weight), bias: tensor(c.bias!), V: 1000, C: 24, softcap: 4, first, count }));
    const got = (await readRaw(ws.logits)).subarray(0, 1000 * count);
    for (let i = 0; i < count; i++) {
      const row = rows[first + i];
      const column = Float64Array.from({ length: 1000 }, (_, v) => got[v * count + i]);
      expectClose(column, want.subarray(row * 1000, (row + 1) * 1000), 1e-5, `row ${row}`);
    }
  }
});
