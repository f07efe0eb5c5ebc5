import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { createCrossEntropyKernels } from "../../../src/gpu/kernels/crossentropy.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, expectClose, freeTensors, random, randomInts, read, readRaw, Rng, run, tensor, zeros } from "./harness.ts";

setDefaultTimeout(120_000); // the software adapter shares two CPU cores with everything else

const ce = await createCrossEntropyKernels(context);
afterAll(freeTensors);

interface Case {
  logits: Float64Array;
  targets: Uint32Array;
  weights: Float64Array;
  N: number;
  V: number;
}

function makeCase(N: number, V: number, seed: number, spread = 10): Case {
  const rng = new Rng(seed);
  const weights = random(N, rng, 0, 2).map((w, i) => (i % 3 === 2 ? 0 : w)); // every third row masked out
  return { logits: random(N * V, rng, -spread, spread), targets: randomInts(N, V, rng), weights, N, V };
}

/** Runs the kernel; returns losses and what the logits buffer holds afterwards. */
async function gpuCrossEntropy(c: Case, gradScale: number) {
  const logits = tensor(c.logits), losses = zeros(c.N);
  run((r) => ce.crossEntropy(r, { logits, losses, targets: tensor(c.targets), weights: tensor(c.weights), N: c.N, V: c.V, gradScale }));
  return { losses: await read(losses), logits: await read(logits) };
}

// Loss and gradient against float64: the row reductions run over ≤ 50257 terms in a tree, well inside 1e-5.
test.each([[1, 1], [3, 5], [7, 300], [65, 1000], [2, 50257]])("N=%d V=%d: weighted losses and in-place gradient match float64", async (N, V) => {
  const c = makeCase(N, V, N * 7 + V);
  const gradScale = 1 / N;
  const got = await gpuCrossEntropy(c, gradScale);
  const want = ref.crossEntropy(c.logits, c.targets, c.weights, N, V, gradScale);
  expectClose(got.losses, want.losses, 1e-5, "losses");
  expectClose(got.logits, want.dlogits, 1e-5, "dlogits");
});

test("rows of weight 0 get exactly zero loss and zero gradient, even with extreme logits", async () => {
  const c = makeCase(6, 40, 5);
  c.weights.set([0, 1, 0, 0.5, 0, 0]);
  c.logits.fill(3e38, 0, 40); // would overflow any unguarded exp
  const got = await gpuCrossEntropy(c, 0.25);
  const want = ref.crossEntropy(c.logits, c.targets, c.weights, 6, 40, 0.25);
  for (const row of [0, 2, 4, 5]) {
    expect(got.losses[row]).toBe(0);
    expect(got.logits.subarray(row * 40, row * 40 + 40).every((g) => g === 0)).toBe(true);
  }
  expectClose([got.losses[1], got.losses[3]], [want.losses[1], want.losses[3]], 1e-5, "unmasked losses");
});

test("gradScale 0 computes losses only and leaves the logits untouched", async () => {
  const c = makeCase(5, 77, 9);
  const got = await gpuCrossEntropy(c, 0);
  expect(got.logits).toEqual(c.logits);
  expectClose(got.losses, ref.crossEntropy(c.logits, c.targets, c.weights, 5, 77, 0).losses, 1e-5);
});

test("large logits are handled by max subtraction (no overflow)", async () => {
  const c = makeCase(4, 500, 13);
  const shifted = c.logits.map((x, i) => x + (i < 1000 ? 1000 : -500)); // rows 0-1 near +1000, rows 2-3 near -500
  const s = { ...c, logits: shifted };
  const got = await gpuCrossEntropy(s, 1);
  const want = ref.crossEntropy(shifted, s.targets, s.weights, 4, 500, 1);
  expect(got.losses.every(Number.isFinite)).toBe(true);
  // losses are differences of numbers near 1000, so f32 rounding of the logits' scale shows: 1e-4
  expectClose(got.losses, want.losses, 1e-4, "losses");
  expectClose(got.logits, want.dlogits, 1e-5, "dlogits");
});

test("more rows than one grid dimension holds (folded into y)", async () => {
  const c = makeCase(65_537, 3, 17);
  const got = await gpuCrossEntropy(c, 1);
  const want = ref.crossEntropy(c.logits, c.targets, c.weights, c.N, c.V, 1);
  expectClose(got.losses, want.losses, 1e-5, "losses");
  expectClose(got.logits, want.dlogits, 1e-5, "dlogits");
});

test("is deterministic: two runs give bit-identical losses and gradients", async () => {
  const c = makeCase(9, 3001, 21);
  const results = [];
  for (let i = 0; i < 2; i++) {
    const logits = tensor(c.logits), losses = zeros(c.N);
    run((r) => ce.crossEntropy(r, { logits, losses, targets: tensor(c.targets), weights: tensor(c.weights), N: c.N, V: c.V, gradScale: 0.1 }));
    results.push([await readRaw(losses), await readRaw(logits)]);
  }
  expect(results[1][0]).toEqual(results[0][0]);
  expect(results[1][1]).toEqual(results[0][1]);
});
