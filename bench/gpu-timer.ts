/**
 * GPU timing for the benchmarks: `timestamp-query` timestamps written by empty passes just before and just after
 * a batch of dispatches when the adapter has the feature (llvmpipe and NVIDIA do), else wall-clock over a
 * submitted batch. Also a per-pipeline profile of a recorded sequence (bench/train.ts --profile).
 */
import type { Gpu } from "../src/gpu/device.ts";
import { Recorder, type Binding, type Grid } from "../src/gpu/recorder.ts";

/** Seconds of GPU time for `reps` back-to-back calls of `record`. */
export type Timer = (record: (r: Recorder) => void, reps: number) => Promise<number>;

export function wallClockTimer(gpu: Gpu): Timer {
  return async (record, reps) => {
    const r = new Recorder(gpu);
    for (let i = 0; i < reps; i++) record(r);
    const start = performance.now();
    r.submit();
    await gpu.device.queue.onSubmittedWorkDone();
    return (performance.now() - start) / 1000;
  };
}

export function timestampTimer(gpu: Gpu): Timer {
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

export function gpuTimer(gpu: Gpu): { time: Timer; kind: string } {
  return gpu.device.features.has("timestamp-query") ? { time: timestampTimer(gpu), kind: "GPU timestamps" } : { time: wallClockTimer(gpu), kind: "wall-clock" };
}

interface Captured {
  pipeline: GPUComputePipeline;
  params: number[];
  bindings: Binding[];
  grid: Grid;
}

/**
 * Records every dispatch `run` makes (through any Recorder) while letting it run as usual, then replays each
 * captured dispatch alone `reps` times and sums GPU time per pipeline label (the kernel and its override
 * constants). Replays write into the same buffers, so run it after the timed part of a benchmark.
 */
export async function profileDispatches(gpu: Gpu, run: () => Promise<unknown>, reps = 3): Promise<{ label: string; calls: number; ms: number }[]> {
  const captured: Captured[] = [];
  const original = Recorder.prototype.dispatch;
  Recorder.prototype.dispatch = function (this: Recorder, pipeline, params, bindings, grid) {
    captured.push({ pipeline, params: Array.from(params), bindings: [...bindings], grid });
    return original.call(this, pipeline, params, bindings, grid);
  };
  try {
    await run();
  } finally {
    Recorder.prototype.dispatch = original;
  }
  const { time } = gpuTimer(gpu);
  const byLabel = new Map<string, { calls: number; ms: number }>();
  for (const c of captured) {
    const seconds = await time((r) => r.dispatch(c.pipeline, c.params, c.bindings, c.grid), reps);
    const entry = byLabel.get(c.pipeline.label) ?? { calls: 0, ms: 0 };
    entry.calls++;
    entry.ms += (seconds / reps) * 1000;
    byLabel.set(c.pipeline.label, entry);
  }
  return [...byLabel].map(([label, e]) => ({ label, ...e })).sort((x, y) => y.ms - x.ms);
}
