/**
 * Matmul throughput (GFLOP/s) of shaders/matmul.wgsl on the adapter present: square sizes 512…4096, then the
 * products of a GPT-2 124M training step (B·T = 8192 tokens, C = 768), or with --shapes tiny (the default on a
 * software adapter) those of bench/train.ts's small config (B·T = 512, C = 128, vocab 2048) and a LoRA-sized
 * rank-8 product. Each shape is time-boxed: its cost is
 * predicted from the rate measured so far and it is skipped (and listed as such) when it would not fit.
 * Timing uses GPU timestamps around the batch of dispatches when the adapter has `timestamp-query`, otherwise
 * wall-clock over a submitted batch after a warm-up. Prints figures; never fails on speed.
 *
 *   npm run bench -- matmul   (or: bash scripts/bench.sh matmul; the script makes the software adapter visible)
 *   bun bench/matmul.ts [--budget SECONDS] [--shapes gpt2|tiny] [--variants] [--tilings] [--json]
 *     --budget    seconds one shape may take, all repetitions together (default 20)
 *     --variants  also measure every kernel family forced on (register-tiled, workgroup-tiled)
 *     --tilings   also measure every candidate tiling of the tiled kernel forced on (for tuning the automatic choice)
 */
import { parseArgs } from "node:util";
import { acquireGpu, describeGpu } from "../src/gpu/device.ts";
import { bind, createStorage, upload } from "../src/gpu/buffers.ts";
import { createMatmulKernels, LARGE_TILING, MATMUL_VARIANTS, SMALL_TILING, type MatmulOptions, type MatmulTiling, type MatmulVariant } from "../src/gpu/kernels/matmul.ts";
import type { MatmulKernels } from "../src/gpu/kernels/index.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { ShaderLibrary } from "../src/gpu/shaders.ts";
import { gpuTimer } from "./gpu-timer.ts";

const { values } = parseArgs({
  options: { budget: { type: "string" }, shapes: { type: "string" }, variants: { type: "boolean" }, tilings: { type: "boolean" }, json: { type: "boolean" } },
});
const budgetSeconds = Number(values.budget ?? 20);

interface Shape {
  name: string;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
}

/** The products of one training step of a GPT-2 of width C over BT tokens and vocabulary V. */
const trainingShapes = (BT: number, C: number, V: number): Shape[] => [
  { name: "qkv = x·W", M: BT, N: 3 * C, K: C },
  { name: "fc = x·W", M: BT, N: 4 * C, K: C },
  { name: "proj = h·W", M: BT, N: C, K: 4 * C },
  { name: "dx = dout·Wᵀ (fc)", M: BT, N: C, K: 4 * C, transB: true },
  { name: "dW += xᵀ·dout (fc)", M: C, N: 4 * C, K: BT, transA: true },
  { name: "dW += xᵀ·dout (attn)", M: C, N: C, K: BT, transA: true }, // split along K
  { name: "logits = x·wteᵀ", M: BT, N: V, K: C, transB: true },
  { name: "dx = dlogits·wte", M: BT, N: C, K: V },
  { name: "dwte += dlogitsᵀ·x", M: V, N: C, K: BT, transA: true },
];
const SHAPE_SETS: Record<string, Shape[]> = {
  gpt2: [...[512, 1024, 2048, 4096].map((n) => ({ name: `square ${n}`, M: n, N: n, K: n })), ...trainingShapes(8192, 768, 50257)],
  tiny: [
    { name: "square 256", M: 256, N: 256, K: 256 },
    ...trainingShapes(512, 128, 2048),
    { name: "LoRA x·A (rank 8)", M: 512, N: 8, K: 128 },
    { name: "LoRA dA += xᵀ·dh", M: 128, N: 8, K: 512, transA: true },
  ],
};

const CANDIDATE_TILINGS: MatmulTiling[] = [
  LARGE_TILING,
  SMALL_TILING,
  { wgM: 16, wgN: 8, bk: 8 },
  { wgM: 8, wgN: 16, bk: 8 },
  { wgM: 8, wgN: 8, bk: 8 },
];

interface Measured {
  shape: string;
  tiling: string;
  M: number;
  N: number;
  K: number;
  ms?: number;
  gflops?: number;
  skipped?: string;
}

const gpu = await acquireGpu();
const SHAPES = SHAPE_SETS[values.shapes ?? (gpu.adapter.isSoftware ? "tiny" : "gpt2")];
if (!SHAPES) throw new Error(`--shapes: expected one of ${Object.keys(SHAPE_SETS).join(", ")}`);
const shaders = new ShaderLibrary(gpu.device);
const { time, kind: timing } = gpuTimer(gpu);
const limits = gpu.device.limits;
let rate = 0; // FLOP/s measured on the last shape, for predicting the next one's cost

function filled(floats: number, label: string): GPUBuffer {
  const buffer = createStorage(gpu, label, floats * 4);
  const chunk = new Float32Array(Math.min(floats, 1 << 22)).map((_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  for (let at = 0; at < floats; at += chunk.length) upload(gpu, bind(buffer, at * 4), chunk.subarray(0, Math.min(chunk.length, floats - at)));
  return buffer;
}

async function measure(kernels: MatmulKernels, tilingName: string, s: Shape): Promise<Measured> {
  const row: Measured = { shape: s.name, tiling: tilingName, M: s.M, N: s.N, K: s.K };
  const flops = 2 * s.M * s.N * s.K;
  const largest = 4 * Math.max(s.M * s.K, s.K * s.N, s.M * s.N);
  if (largest > limits.maxStorageBufferBindingSize || largest > limits.maxBufferSize) {
    return { ...row, skipped: `a ${(largest / 2 ** 20).toFixed(0)} MiB operand exceeds the adapter's binding limit` };
  }
  // Warm-up, one timed call, then a batch sized to ~0.25 s, all within the budget.
  if (rate > 0 && (3 * flops) / rate > budgetSeconds) {
    return { ...row, skipped: `predicted ${((3 * flops) / rate).toFixed(0)} s at ${(rate / 1e9).toFixed(1)} GFLOP/s exceeds the ${budgetSeconds} s budget` };
  }
  const buffers = [filled(s.M * s.K, "a"), filled(s.K * s.N, "b"), createStorage(gpu, "out", s.M * s.N * 4)];
  const [a, b, out] = buffers.map((buffer) => bind(buffer));
  const record = (r: Recorder) => kernels.matmul(r, { out, a, b, M: s.M, N: s.N, K: s.K, transA: s.transA, transB: s.transB });
  try {
    await time(record, 1);
    const once = await time(record, 1);
    const reps = Math.max(1, Math.min(50, Math.floor(Math.min(0.25, budgetSeconds / 4) / once)));
    const seconds = reps > 1 ? Math.min(await time(record, reps), await time(record, reps)) / reps : once;
    rate = flops / seconds;
    return { ...row, ms: seconds * 1000, gflops: flops / seconds / 1e9 };
  } finally {
    await gpu.device.queue.onSubmittedWorkDone();
    buffers.forEach((buffer) => buffer.destroy());
  }
}

const tilingName = (t: MatmulTiling) => `${8 * t.wgM}×${8 * t.wgN} k${t.bk}`;
// With --variants: every kernel family forced on (the first is the adapter's own choice, so "auto" is left out).
const configurations: [string, MatmulOptions][] = values.variants ? [] : [["auto", {}]];
if (values.variants) {
  const own = (await createMatmulKernels({ gpu, shaders })).variant as MatmulVariant;
  const families = [own, ...MATMUL_VARIANTS.filter((v) => v !== own)];
  configurations.push(...families.map((variant): [string, MatmulOptions] => [variant, { variant }]));
}
if (values.tilings) configurations.push(...CANDIDATE_TILINGS.map((t): [string, MatmulOptions] => [tilingName(t), { tiling: t }]));

if (!values.json) console.log(`this adapter's own choice: the "${(await createMatmulKernels({ gpu, shaders })).variant}" kernel`);
// Shapes outer, configurations inner: on a shared, loaded machine the variants of one shape are measured back to
// back, so their ratio (printed against the first configuration) means more than the absolute figures.
const kernelsOf = await Promise.all(configurations.map(([, options]) => createMatmulKernels({ gpu, shaders }, options)));
const rates = configurations.map(() => 0);
const results: Measured[] = [];
for (const shape of SHAPES) {
  let first: number | undefined;
  for (const [c, [name]] of configurations.entries()) {
    rate = rates[c];
    const result = await measure(kernelsOf[c], name, shape);
    rates[c] = rate;
    results.push(result);
    if (c === 0) first = result.gflops;
    if (!values.json) {
      const relative = c > 0 && first && result.gflops ? `  ${(result.gflops / first).toFixed(2)}× the first` : "";
      const figure = result.gflops !== undefined ? `${result.gflops.toFixed(1).padStart(9)} GFLOP/s  ${result.ms!.toFixed(3).padStart(9)} ms${relative}` : `skipped: ${result.skipped}`;
      console.log(`${result.tiling.padEnd(14)} ${result.shape.padEnd(22)} ${`${result.M}×${result.N}×${result.K}`.padEnd(18)} ${figure}`);
    }
  }
}
if (values.json) console.log(JSON.stringify({ adapter: describeGpu(gpu), timing, results }));
else console.log(`adapter: ${describeGpu(gpu)}; timing: ${timing}; budget ${budgetSeconds} s per shape`);
gpu.destroy();
