import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { bind, createStorage, upload } from "../../../src/gpu/buffers.ts";
import { COMPACT_TILING, createMatmulKernels, defaultMatmulVariant, LARGE_TILING, REGISTER_TILING, SMALL_TILING } from "../../../src/gpu/kernels/matmul.ts";
import { createGeluKernels } from "../../../src/gpu/kernels/gelu.ts";
import { Recorder } from "../../../src/gpu/recorder.ts";
import * as ref from "../../../src/reference/ops.ts";
import { context, expectClose, freeTensors, gpu, random, read, readRaw, run, tensor, zeros } from "./harness.ts";

setDefaultTimeout(120_000); // the software adapter shares two CPU cores with everything else

afterAll(freeTensors);

// fp32 against fp64: a K-term dot product carries ~√K·2⁻²⁴ relative error; these bounds leave a wide margin.
const tolerance = (K: number) => (K <= 100 ? 1e-5 : 1e-4);

// Ragged sizes (not multiples of any tile), degenerate ones, exact tile multiples, and a few K slices deep.
const SHAPES: [M: number, N: number, K: number][] = [
  [1, 1, 1], [7, 5, 3], [1, 1000, 3], [130, 1, 100], [65, 77, 100], [130, 1000, 100], [64, 64, 64], [128, 128, 16], [33, 70, 1000],
];
const TRANSPOSES = [[false, false], [false, true], [true, false], [true, true]] as const;

// Both kernel families, every tiling forced on, and K split into partial products (ragged splits: K=100 in 5 ways
// is 32+32+32+4). The register-tiled kernel also with one lane count for every width (its narrow pipeline otherwise
// takes the products below 65 columns).
const kernelsByConfig = {
  register: await createMatmulKernels(context, { variant: "register" }),
  "register, 16 lanes at every width": await createMatmulKernels(context, { variant: "register", registerTiling: { ...REGISTER_TILING, narrowBelow: 0 } }),
  "64×64 tiles": await createMatmulKernels(context, { tiling: SMALL_TILING }),
  "128×128 tiles": await createMatmulKernels(context, { tiling: LARGE_TILING }),
  "compact 64×64 tiles": await createMatmulKernels(context, { tiling: COMPACT_TILING }),
  "register, K split 3 ways": await createMatmulKernels(context, { variant: "register", splitK: 3 }),
  "128×128 tiles, K split 5 ways": await createMatmulKernels(context, { tiling: LARGE_TILING, splitK: 5 }),
};

// The adapter's own choice (register-tiled here, tiled on a GPU), and the tiled kernel choosing its tiling per shape.
const chosen = { default: await createMatmulKernels(context), tiled: await createMatmulKernels(context, { variant: "tiled" }) };

describe.each(Object.keys(kernelsByConfig) as (keyof typeof kernelsByConfig)[])("matmul, %s", (config) => {
  const mm = kernelsByConfig[config];
  test.each(TRANSPOSES)("transA=%p transB=%p: out = op(a)·op(b) + bias for every shape", async (transA, transB) => {
    for (const [M, N, K] of SHAPES) {
      const seed = M * 1_000_003 + N * 1009 + K;
      const a = random(M * K, seed), b = random(K * N, seed + 1), bias = random(N, seed + 2);
      const plain = zeros(M * N), biased = zeros(M * N);
      run((r) => {
        mm.matmul(r, { out: plain, a: tensor(a), b: tensor(b), M, N, K, transA, transB });
        mm.matmul(r, { out: biased, a: tensor(a), b: tensor(b), bias: tensor(bias), M, N, K, transA, transB });
      });
      const what = `M=${M} N=${N} K=${K}`;
      expectClose(await read(plain), ref.matmul(a, b, null, M, N, K, transA, transB), tolerance(K), what);
      expectClose(await read(biased), ref.matmul(a, b, bias, M, N, K, transA, transB), tolerance(K), `${what} with bias`);
    }
  });

  test.each(TRANSPOSES)("transA=%p transB=%p: accumulate adds onto what out holds", async (transA, transB) => {
    const [M, N, K] = [70, 90, 40];
    const a = random(M * K, 11), b = random(K * N, 12), bias = random(N, 13), before = random(M * N, 14);
    const out = tensor(before);
    run((r) => mm.matmul(r, { out, a: tensor(a), b: tensor(b), bias: tensor(bias), M, N, K, transA, transB, accumulate: true }));
    const product = ref.matmul(a, b, bias, M, N, K, transA, transB);
    expectClose(await read(out), product.map((x, i) => x + before[i]), tolerance(K));
  });
});

test("the shapes GPT-2 uses (x·W, x·wteᵀ, dout·Wᵀ, dW += xᵀ·dout) agree with the reference at small sizes", async () => {
  const mm = chosen.default;
  const [BT, C, V] = [24, 48, 301]; // tokens, channels, vocabulary
  const x = random(BT * C, 1), w = random(C * 3 * C, 2), wte = random(V * C, 3), dout = random(BT * 3 * C, 4);
  const qkv = zeros(BT * 3 * C), logits = zeros(BT * V), dx = zeros(BT * C), dw = tensor(random(C * 3 * C, 5));
  const dwBefore = await read(dw);
  run((r) => {
    mm.matmul(r, { out: qkv, a: tensor(x), b: tensor(w), M: BT, N: 3 * C, K: C });
    mm.matmul(r, { out: logits, a: tensor(x), b: tensor(wte), M: BT, N: V, K: C, transB: true });
    mm.matmul(r, { out: dx, a: tensor(dout), b: tensor(w), M: BT, N: C, K: 3 * C, transB: true });
    mm.matmul(r, { out: dw, a: tensor(x), b: tensor(dout), M: C, N: 3 * C, K: BT, transA: true, accumulate: true });
  });
  expectClose(await read(qkv), ref.matmul(x, w, null, BT, 3 * C, C, false, false), 1e-5, "x·W");
  expectClose(await read(logits), ref.matmul(x, wte, null, BT, V, C, false, true), 1e-5, "x·wteᵀ");
  expectClose(await read(dx), ref.matmul(dout, w, null, BT, C, 3 * C, false, true), 1e-4, "dout·Wᵀ");
  const dW = ref.matmul(x, dout, null, C, 3 * C, BT, true, false);
  expectClose(await read(dw), dW.map((g, i) => g + dwBefore[i]), 1e-5, "dW += xᵀ·dout");
});

test("operands bound at offsets inside packed buffers are read and written in place", async () => {
  // WebGPU forbids one buffer being written and read by the same dispatch, so inputs and output are packed apart.
  const [M, N, K] = [9, 13, 21];
  const a = random(M * K, 21), b = random(K * N, 22), sentinel = random(4096, 23);
  const inputs = createStorage(gpu, "packed inputs", 4096 * 4);
  const outputs = tensor(sentinel);
  const [aAt, bAt, outAt] = [256, 1280, 2560]; // byte offsets, multiples of 256
  const aBinding = bind(inputs, aAt, a.length * 4), bBinding = bind(inputs, bAt, b.length * 4);
  upload(gpu, aBinding, Float32Array.from(a));
  upload(gpu, bBinding, Float32Array.from(b));
  const out = bind(outputs.buffer, outAt, M * N * 4);
  run((r) => chosen.default.matmul(r, { out, a: aBinding, b: bBinding, M, N, K }));
  expectClose(await read(out), ref.matmul(a, b, null, M, N, K, false, false), 1e-5);
  const all = await read(outputs);
  const untouched = [...all.subarray(0, outAt / 4), ...all.subarray(outAt / 4 + M * N)];
  expect(untouched).toEqual([...sentinel.subarray(0, outAt / 4), ...sentinel.subarray(outAt / 4 + M * N)]);
  inputs.destroy();
});

test.each(["register", "64×64 tiles", "register, K split 3 ways"] as const)("matmul (%s) is deterministic: two runs give bit-identical results", async (config) => {
  const [M, N, K] = [100, 150, 300];
  const a = tensor(random(M * K, 31)), b = tensor(random(N * K, 32));
  const first = zeros(M * N), second = zeros(M * N);
  run((r) => kernelsByConfig[config].matmul(r, { out: first, a, b, M, N, K, transB: true }));
  run((r) => kernelsByConfig[config].matmul(r, { out: second, a, b, M, N, K, transB: true }));
  expect(await readRaw(second)).toEqual(await readRaw(first));
});

test("the kernel family is chosen per adapter (register-tiled on software adapters), COT_DISTILL_MATMUL overrides", () => {
  expect(defaultMatmulVariant({ isSoftware: true }, undefined)).toBe("register");
  expect(defaultMatmulVariant({ isSoftware: false }, undefined)).toBe("tiled");
  expect(defaultMatmulVariant({ isSoftware: true }, "tiled")).toBe("tiled");
  expect(() => defaultMatmulVariant({ isSoftware: true }, "fast")).toThrow("COT_DISTILL_MATMUL=fast: expected one of tiled, register");
  expect(chosen.default.variant).toBe(defaultMatmulVariant(gpu.adapter));
});

test("the tiled kernel's automatic choice splits K for a small-output, deep product (a weight gradient) and stays exact", async () => {
  const [M, N, K] = [40, 24, 2048]; // one 64×64 tile: split min(2048/256, 16) = 8 ways
  const a = random(K * M, 41), b = random(K * N, 42), before = random(M * N, 43);
  const out = tensor(before);
  const recorder = new Recorder(gpu);
  chosen.tiled.matmul(recorder, { out, a: tensor(a), b: tensor(b), M, N, K, transA: true, accumulate: true });
  expect(recorder.dispatches).toBe(2); // the split partial products, then their ordered sum
  recorder.submit();
  const product = ref.matmul(a, b, null, M, N, K, true, false);
  expectClose(await read(out), product.map((x, i) => x + before[i]), 1e-4);
});

// The MLP's fc → GELU: the fused epilogue against the unfused path (the same product, then gelu.forward).
describe.each(["register", "64×64 tiles", "register, K split 3 ways", "128×128 tiles, K split 5 ways"] as const)("GELU epilogue, %s", (config) => {
  const mm = kernelsByConfig[config];
  test.each([[false, false], [false, true], [true, false]] as const)("transA=%p transB=%p, with bias and with accumulate", async (transA, transB) => {
    const gelu = await createGeluKernels(context);
    for (const [M, N, K, accumulate] of [[65, 77, 100, false], [9, 300, 33, true]] as const) {
      // scaled so the pre-activations span GELU's curved part and its saturated tails (|x| > 10)
      const a = random(M * K, M + K, -2, 2), b = random(K * N, N, -2, 2), bias = random(N, 5), before = random(M * N, 6);
      const fc = tensor(before), act = zeros(M * N), plainFc = tensor(before), plainAct = zeros(M * N);
      run((r) => {
        mm.matmul(r, { out: fc, gelu: act, a: tensor(a), b: tensor(b), bias: tensor(bias), M, N, K, transA, transB, accumulate });
        mm.matmul(r, { out: plainFc, a: tensor(a), b: tensor(b), bias: tensor(bias), M, N, K, transA, transB, accumulate });
        gelu.forward(r, { out: plainAct, inp: plainFc, n: M * N });
      });
      const what = `M=${M} N=${N} K=${K} accumulate=${accumulate}`;
      expect(await readRaw(fc), `${what}: the saved pre-activation`).toEqual(await readRaw(plainFc));
      expectClose(await read(act), await read(plainAct), 1e-6, `${what}: act vs the unfused GELU`);
      const pre = ref.matmul(a, b, bias, M, N, K, transA, transB).map((x, i) => x + (accumulate ? before[i] : 0));
      expect(pre.some((x) => Math.abs(x) > 10)).toBe(true);
      expectClose(await read(act), pre.map((x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))), 1e-4, `${what}: act vs float64`);
    }
  });
});

test("narrow products (LoRA's rank 8) run on one SIMD vector's worth of lanes and stay exact", async () => {
  const mm = kernelsByConfig.register;
  for (const [M, N, K, transA] of [[64, 8, 40, false], [40, 8, 64, true], [33, 64, 20, false], [30, 65, 9, false]] as const) {
    const a = random(M * K, N + K), b = random(K * N, N), out = zeros(M * N);
    run((r) => mm.matmul(r, { out, a: tensor(a), b: tensor(b), M, N, K, transA }));
    expectClose(await read(out), ref.matmul(a, b, null, M, N, K, transA, false), 1e-5, `M=${M} N=${N} K=${K}`);
  }
});

describe("biasBackward", () => {
  const mm = chosen.default;
  test.each([[1, 1], [7, 77], [256, 5], [300, 1000], [1000, 33]])("dbias += column sums for M=%d N=%d", async (M, N) => {
    const dout = random(M * N, M + N), before = random(N, 7);
    const dbias = tensor(before);
    run((r) => mm.biasBackward(r, { dbias, dout: tensor(dout), M, N }));
    const sums = ref.biasBackward(dout, M, N);
    // the reference sum is float64; relative to the largest |dbias| (column sums can cancel to ~0)
    expectClose(await read(dbias), sums.map((s, i) => s + before[i]), M <= 256 ? 1e-5 : 1e-4);
  });

  test("is deterministic and reuses its scratch across shapes in one submission", async () => {
    const dout = tensor(random(1000 * 50, 3));
    const small = tensor(random(7 * 20, 4));
    const results = [zeros(50), zeros(50)];
    const other = zeros(20);
    run((r) => {
      mm.biasBackward(r, { dbias: results[0], dout, M: 1000, N: 50 });
      mm.biasBackward(r, { dbias: other, dout: small, M: 7, N: 20 });
      mm.biasBackward(r, { dbias: results[1], dout, M: 1000, N: 50 });
    });
    expect(await readRaw(results[1])).toEqual(await readRaw(results[0]));
    expectClose(await read(other), ref.biasBackward(await read(small), 7, 20), 1e-5);
  });
});
