/**
 * Matmul throughput (GFLOP/s) of shaders/matmul.wgsl on the adapter present: square sizes 512…4096, then the
 * products of a GPT-2 124M training step (B·T = 8192 tokens, C = 768). Each shape is time-boxed: its cost is
 * predicted from the rate measured so far and it is skipped (and listed as such) when it would not fit.
 * Timing uses GPU timestamps around the batch of dispatches when the adapter has `timestamp-query`, otherwise
 * wall-clock over a submitted batch after a warm-up. Prints figures; never fails on speed.
 *
 *   npm run bench -- matmul   (or: bash scripts/bench.sh matmul; the script makes the software adapter visible)
 *   bun bench/matmul.ts [--budget SECONDS] [--tilings] [--json]
 *     --budget   seconds one shape may take, all repetitions together (default 20)
 *     --tilings  also measure every candidate tiling forced on (for tuning the automatic choice)
 */
import { parseArgs } from "node:util";
import { acquireGpu, describeGpu, type Gpu } from "../src/gpu/device.ts";
import { bind, createStorage, upload } from "../src/gpu/buffers.ts";
import { createMatmulKernels, LARGE_TILING, SMALL_TILING, type MatmulTiling } from "../src/gpu/kernels/matmul.ts";
import type { MatmulKernels } from "../src/gpu/kernels/index.ts";
import { Recorder } from "../src/gpu/recorder.ts";
import { ShaderLibrary } from "../src/gpu/shaders.ts";

const { values } = parseArgs({ options: { budget: { type: "string" }, tilings: { type: "boolean" }, json: { type: "boolean" } } });
const budgetSeconds = Number(values.budget ?? 20);

interface Shape {
  name: string;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
}

const BT = 8192, C = 768, V = 50257;
const SHAPES: Shape[] = [
  ...[512, 1024, 2048, 4096].map((n) => ({ name: `square ${n}`, M: n, N: n, K: n })),
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

const CANDIDATE_TILINGS: MatmulTiling[] = [
  LARGE_TILING,
  SMALL_TILING,
  { wgM: 16, wgN: 8, bk: 8 },
  { wgM: 8, wgN: 16, bk: 8 },
  { wgM: 8, wgN: 8, bk: 8 },
];

/** Seconds of GPU time for `reps` back-to-back calls of `record`. */
type Timer = (record: (r: Recorder) => void, reps: number) => Promise<number>;

function wallClockTimer(gpu: Gpu): Timer {
  return async (record, reps) => {
    const r = new Recorder(gpu);
    for (let i = 0; i < reps; i++) record(r);
    const start = performance.now();
    r.submit();
    await gpu.device.queue.onSubmittedWorkDone();
    return (performance.now() - start) / 1000;
  };
}

/** Timestamps written by empty passes just before and just after the batch's compute pass. */
function timestampTimer(gpu: Gpu): Timer {
  const device = gpu.device;
  const querySet = device.createQuerySet({ type: "timestamp", count: 2 });
  const resolved = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const mark = (r: Recorder, write: GPUComputePassTimestampWrites) => r.commandEncoder().beginComputePass({ timestampWrites: write }).end();
  return async (record, reps) => {
    const r = new Recorder(gpu);
    mark(r, { querySet, endOfPassWriteIndex: 0 });
    for (let i = 0; i < reps; i++) record(r);
    mark(r, { querySet, beginningOfPassWriteIndex: 1 });
    const encoder = r.commandEncoder();
    encoder.resolveQuerySet(querySet, 0, 2, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, readback, 0, 16);
    r.submit();
    await readback.mapAsync(GPUMapMode.READ);
    const [start, end] = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    return Number(end - start) / 1e9;
  };
}

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
const shaders = new ShaderLibrary(gpu.device);
const useTimestamps = gpu.device.features.has("timestamp-query");
const time = useTimestamps ? timestampTimer(gpu) : wallClockTimer(gpu);
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
const configurations: [string, MatmulTiling | undefined][] = [["auto", undefined]];
if (values.tilings) configurations.push(...CANDIDATE_TILINGS.map((t): [string, MatmulTiling] => [tilingName(t), t]));

const results: Measured[] = [];
for (const [name, tiling] of configurations) {
  const kernels = await createMatmulKernels({ gpu, shaders }, { tiling });
  rate = 0;
  for (const shape of SHAPES) {
    const result = await measure(kernels, name, shape);
    results.push(result);
    if (!values.json) {
      const figure = result.gflops !== undefined ? `${result.gflops.toFixed(1).padStart(9)} GFLOP/s  ${result.ms!.toFixed(3).padStart(9)} ms` : `skipped: ${result.skipped}`;
      console.log(`${result.tiling.padEnd(14)} ${result.shape.padEnd(22)} ${`${result.M}×${result.N}×${result.K}`.padEnd(18)} ${figure}`);
    }
  }
}
if (values.json) console.log(JSON.stringify({ adapter: describeGpu(gpu), timing: useTimestamps ? "timestamps" : "wall-clock", results }));
else console.log(`adapter: ${describeGpu(gpu)}; timing: ${useTimestamps ? "GPU timestamps" : "wall-clock"}; budget ${budgetSeconds} s per shape`);
gpu.destroy();
