import { describe, expect, test } from "bun:test";
import * as ops from "../../src/reference/ops.ts";
import { Rng } from "../../src/model/rng.ts";
import { dot, expectGradient, randomArray } from "./finite-diff.ts";

const rng = new Rng(1234);

/** Row-major transpose of x[rows,cols]. */
function transpose(x: Float64Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = x[i * cols + j];
  return out;
}

describe("matmul", () => {
  test("a 2×2 product by hand, with bias", () => {
    const out = ops.matmul(new Float64Array([1, 2, 3, 4]), new Float64Array([5, 6, 7, 8]), new Float64Array([10, 20]), 2, 2, 2, false, false);
    expect([...out]).toEqual([1 * 5 + 2 * 7 + 10, 1 * 6 + 2 * 8 + 20, 3 * 5 + 4 * 7 + 10, 3 * 6 + 4 * 8 + 20]);
  });

  test("transposed operands give the same product", () => {
    const [M, N, K] = [3, 5, 4];
    const a = randomArray(rng, M * K);
    const b = randomArray(rng, K * N);
    const plain = ops.matmul(a, b, null, M, N, K, false, false);
    const both = ops.matmul(transpose(a, M, K), transpose(b, K, N), null, M, N, K, true, true);
    for (let i = 0; i < plain.length; i++) expect(both[i]).toBeCloseTo(plain[i], 12);
  });

  test("gradients: da = dout·bᵀ, db = aᵀ·dout, dbias = column sums", () => {
    const [M, N, K] = [3, 4, 5];
    const a = randomArray(rng, M * K);
    const b = randomArray(rng, K * N);
    const bias = randomArray(rng, N);
    const dout = randomArray(rng, M * N);
    const loss = () => dot(ops.matmul(a, b, bias, M, N, K, false, false), dout);
    expectGradient(loss, a, ops.matmul(dout, b, null, M, K, N, false, true));
    expectGradient(loss, b, ops.matmul(a, dout, null, K, N, M, true, false));
    expectGradient(loss, bias, ops.biasBackward(dout, M, N));
  });
});

describe("crossEntropy", () => {
  test("uniform logits cost log V per unit weight; zero weight costs nothing", () => {
    const V = 7;
    const { losses, dlogits } = ops.crossEntropy(new Float64Array(2 * V), new Uint32Array([3, 5]), new Float64Array([2, 0]), 2, V, 1);
    expect(losses[0]).toBeCloseTo(2 * Math.log(V), 12);
    expect(losses[1]).toBe(0);
    expect(dlogits[3]).toBeCloseTo(2 * (1 / V - 1), 12);
    expect([...dlogits.subarray(V)].every((g) => g === 0)).toBe(true);
  });

  test("stable for huge logits", () => {
    const { losses } = ops.crossEntropy(new Float64Array([1000, 0]), new Uint32Array([1]), new Float64Array([1]), 1, 2, 1);
    expect(losses[0]).toBeCloseTo(1000, 9);
  });

  test("dlogits is gradScale × the gradient of Σ losses", () => {
    const [N, V] = [4, 6];
    const logits = randomArray(rng, N * V, 2);
    const targets = new Uint32Array([0, 5, 2, 2]);
    const weights = new Float64Array([1, 0.5, 0, 2]);
    const gradScale = 1 / 3.5;
    const loss = () => ops.crossEntropy(logits, targets, weights, N, V, 1).losses.reduce((s, l) => s + l, 0) * gradScale;
    expectGradient(loss, logits, ops.crossEntropy(logits, targets, weights, N, V, gradScale).dlogits);
  });
});

describe("layerNorm", () => {
  test("rows come out with mean 0 and variance 1 before the affine part", () => {
    const [N, C] = [3, 8];
    const inp = randomArray(rng, N * C, 3);
    const { out, rstd } = ops.layerNormForward(inp, new Float64Array(C).fill(1), new Float64Array(C), N, C, 0);
    for (let i = 0; i < N; i++) {
      const row = out.subarray(i * C, (i + 1) * C);
      const mean = row.reduce((s, x) => s + x, 0) / C;
      expect(mean).toBeCloseTo(0, 12);
      expect(row.reduce((s, x) => s + x * x, 0) / C).toBeCloseTo(1, 12);
      expect(rstd[i]).toBeGreaterThan(0);
    }
  });

  test("gradients of input, weight and bias", () => {
    const [N, C] = [3, 5];
    const inp = randomArray(rng, N * C);
    const weight = randomArray(rng, C);
    const bias = randomArray(rng, C);
    const dout = randomArray(rng, N * C);
    const loss = () => dot(ops.layerNormForward(inp, weight, bias, N, C, 1e-5).out, dout);
    const { mean, rstd } = ops.layerNormForward(inp, weight, bias, N, C, 1e-5);
    const grads = ops.layerNormBackward(dout, inp, weight, mean, rstd, N, C);
    expectGradient(loss, inp, grads.dinp);
    expectGradient(loss, weight, grads.dweight);
    expectGradient(loss, bias, grads.dbias);
  });
});

describe("gelu", () => {
  test("matches the tanh formula at known points", () => {
    const out = ops.gelu(new Float64Array([0, 1, -1, 10]));
    expect(out[0]).toBe(0);
    expect(out[1]).toBeCloseTo(0.8411919906082768, 12); // 0.5·(1 + tanh(√(2/π)·1.044715))
    expect(out[2]).toBeCloseTo(out[1] - 1, 12); // gelu(−x) = gelu(x) − x
    expect(out[3]).toBeCloseTo(10, 9);
  });

  test("backward is the derivative", () => {
    const x = randomArray(rng, 20, 2);
    const dout = randomArray(rng, 20);
    expectGradient(() => dot(ops.gelu(x), dout), x, ops.geluBackward(x, dout));
  });
});

describe("attention", () => {
  const [B, T, C, NH] = [2, 4, 6, 2];

  test("the first position attends only to itself; rows of att sum to 1 and are causal", () => {
    const qkv = randomArray(rng, B * T * 3 * C);
    const { out, att } = ops.attentionForward(qkv, B, T, C, NH);
    for (let c = 0; c < C; c++) expect(out[c]).toBeCloseTo(qkv[2 * C + c], 12);
    for (let row = 0; row < B * NH * T; row++) {
      const t = row % T;
      const probs = att.subarray(row * T, (row + 1) * T);
      expect(probs.reduce((s, p) => s + p, 0)).toBeCloseTo(1, 12);
      for (let t2 = t + 1; t2 < T; t2++) expect(probs[t2]).toBe(0);
    }
  });

  test("backward gives dq, dk and dv", () => {
    const qkv = randomArray(rng, B * T * 3 * C);
    const dout = randomArray(rng, B * T * C);
    const { att } = ops.attentionForward(qkv, B, T, C, NH);
    expectGradient(() => dot(ops.attentionForward(qkv, B, T, C, NH).out, dout), qkv, ops.attentionBackward(dout, qkv, att, B, T, C, NH));
  });
});

describe("embedding", () => {
  test("forward adds token and position rows; backward scatters into both tables", () => {
    const [B, T, C, V, maxT] = [2, 3, 4, 5, 6];
    const tokens = new Uint32Array([1, 4, 1, 0, 1, 3]);
    const wte = randomArray(rng, V * C);
    const wpe = randomArray(rng, maxT * C);
    const out = ops.embeddingForward(tokens, wte, wpe, B, T, C);
    expect(out[(1 * T + 2) * C + 3]).toBe(wte[3 * C + 3] + wpe[2 * C + 3]);
    const dout = randomArray(rng, B * T * C);
    const loss = () => dot(ops.embeddingForward(tokens, wte, wpe, B, T, C), dout);
    const { dwte, dwpe } = ops.embeddingBackward(dout, tokens, B, T, C, V, maxT);
    expectGradient(loss, wte, dwte);
    expectGradient(loss, wpe, dwpe);
  });
});

describe("adamw", () => {
  const base = { lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, step: 1, clipScale: 1 };

  test("the first step moves each parameter by lr against the sign of its gradient", () => {
    const params = new Float64Array([1, 1, 1]);
    ops.adamwStep(params, new Float64Array([3, -0.001, 0]), new Float64Array(3), new Float64Array(3), base);
    expect(params[0]).toBeCloseTo(0.9, 6);
    expect(params[1]).toBeCloseTo(1.1, 4);
    expect(params[2]).toBe(1);
  });

  test("decoupled weight decay shrinks by lr·wd even with a zero gradient", () => {
    const params = new Float64Array([2]);
    ops.adamwStep(params, new Float64Array(1), new Float64Array(1), new Float64Array(1), { ...base, weightDecay: 0.5 });
    expect(params[0]).toBeCloseTo(2 * (1 - 0.1 * 0.5), 12);
  });

  test("moments follow the EMA recurrences with bias correction at step 2", () => {
    const params = new Float64Array([0]);
    const m = new Float64Array([0.5]);
    const v = new Float64Array([0.25]);
    ops.adamwStep(params, new Float64Array([4]), m, v, { ...base, step: 2, clipScale: 0.5 });
    expect(m[0]).toBeCloseTo(0.9 * 0.5 + 0.1 * 2, 12);
    expect(v[0]).toBeCloseTo(0.95 * 0.25 + 0.05 * 4, 12);
    expect(params[0]).toBeCloseTo(-0.1 * (m[0] / (1 - 0.81)) / (Math.sqrt(v[0] / (1 - 0.9025)) + 1e-8), 12);
  });

  test("grad norm and clip factor", () => {
    expect(ops.gradNormSquared(new Float64Array([3, 4]))).toBe(25);
    expect(ops.clipScale(25, 1)).toBeCloseTo(1 / (5 + 1e-6), 15);
    expect(ops.clipScale(0.25, 1)).toBe(1);
    expect(ops.clipScale(25, 0)).toBe(1);
  });
});
