/**
 * Matrix products and the bias gradient (shaders/matmul.wgsl). One shader serves all four transpose variants
 * (override constants, so each variant is its own specialised pipeline) and two tile sizes: 128×128 tiles for
 * big products, 64×64 tiles when 128×128 would leave too few workgroups to fill the GPU (one compact tiling on
 * adapters with only the minimum 16 KiB of workgroup memory).
 */
import { bind, createStorage } from "../buffers.ts";
import type { Binding, Recorder } from "../recorder.ts";
import type { KernelContext, MatmulKernels } from "./index.ts";

/** Threads per workgroup along M and N (each thread computes 8×8 outputs) and the depth of a staged K slice. */
export interface MatmulTiling {
  wgM: number;
  wgN: number;
  bk: number;
}

export const LARGE_TILING: MatmulTiling = { wgM: 16, wgN: 16, bk: 8 }; // 128×128 tiles, 256 threads
export const SMALL_TILING: MatmulTiling = { wgM: 8, wgN: 8, bk: 16 }; // 64×64 tiles, 64 threads
/** For adapters at WebGPU's minimum of 16 KiB workgroup memory, where the two above do not fit. */
export const COMPACT_TILING: MatmulTiling = { wgM: 8, wgN: 8, bk: 8 };

/** Below this many 128×128 tiles a product uses 64×64 tiles instead (4× the workgroups). */
const LARGE_TILES_WANTED = 512;

export interface MatmulOptions {
  /** Use only this tiling (benchmarks, tests); by default the tiling is chosen per product shape. */
  tiling?: MatmulTiling;
}

const HAS_BIAS = 1;
const ACCUMULATE = 2;
const COLUMN_PARTIALS = { COLS: 32, LANES: 8, ROWS: 256 };

const tileRows = (t: MatmulTiling) => 8 * t.wgM;
const tileCols = (t: MatmulTiling) => 8 * t.wgN;

/** Bytes of workgroup memory a tiling stages: two slices each of a and b, rows padded by one vec4. */
function workgroupBytes(t: MatmulTiling): number {
  return 2 * t.bk * (2 * t.wgM + 1) * 16 + 2 * t.bk * (2 * t.wgN + 1) * 16;
}

function checkTiling(t: MatmulTiling, maxWorkgroupBytes: number): void {
  // Each thread stages 8·BK/WG_N elements of a and 8·BK/WG_M of b per slice, at most 16 (MAX_LOADS).
  const loads = [(8 * t.bk) / t.wgN, (8 * t.bk) / t.wgM];
  const bad = loads.some((n) => !Number.isInteger(n) || n < 1 || n > 16) || workgroupBytes(t) > maxWorkgroupBytes;
  if (bad) throw new Error(`unsupported matmul tiling ${JSON.stringify(t)} (workgroup memory limit ${maxWorkgroupBytes} bytes)`);
}

export async function createMatmulKernels(ctx: KernelContext, options: MatmulOptions = {}): Promise<MatmulKernels> {
  const maxWorkgroupBytes = ctx.gpu.device.limits.maxComputeWorkgroupStorageSize;
  const defaults = [LARGE_TILING, SMALL_TILING].every((t) => workgroupBytes(t) <= maxWorkgroupBytes) ? [LARGE_TILING, SMALL_TILING] : [COMPACT_TILING];
  const tilings = options.tiling ? [options.tiling] : defaults;
  tilings.forEach((t) => checkTiling(t, maxWorkgroupBytes));
  const variants = tilings.flatMap((tiling) =>
    [false, true].flatMap((transA) => [false, true].map((transB) => ({ tiling, transA, transB }))),
  );
  const pipelines = await Promise.all(
    variants.map((v) =>
      ctx.shaders.pipeline("matmul", "main", { TRANS_A: Number(v.transA), TRANS_B: Number(v.transB), WG_M: v.tiling.wgM, WG_N: v.tiling.wgN, BK: v.tiling.bk }),
    ),
  );
  const [columnPartials, columnTotals] = await Promise.all([
    ctx.shaders.pipeline("matmul", "columnPartials", COLUMN_PARTIALS),
    ctx.shaders.pipeline("matmul", "columnTotals", COLUMN_PARTIALS),
  ]);
  const noBias = bind(createStorage(ctx.gpu, "matmul: no bias", 16));
  let partials: GPUBuffer | null = null; // biasBackward scratch, grown on demand

  function chooseTiling(M: number, N: number): MatmulTiling {
    if (tilings.length === 1) return tilings[0];
    const largeTiles = Math.ceil(M / tileRows(LARGE_TILING)) * Math.ceil(N / tileCols(LARGE_TILING));
    return largeTiles >= LARGE_TILES_WANTED ? LARGE_TILING : SMALL_TILING;
  }

  function matmul(r: Recorder, o: Parameters<MatmulKernels["matmul"]>[1]): void {
    const { M, N, K, transA = false, transB = false } = o;
    const tiling = chooseTiling(M, N);
    const index = variants.findIndex((v) => v.tiling === tiling && v.transA === transA && v.transB === transB);
    const flags = (o.bias ? HAS_BIAS : 0) | (o.accumulate ? ACCUMULATE : 0);
    const grid = [Math.ceil(N / tileCols(tiling)), Math.ceil(M / tileRows(tiling))] as const;
    r.dispatch(pipelines[index], [M, N, K, flags], [o.out, o.a, o.b, o.bias ?? noBias], grid);
  }

  function scratch(floats: number): Binding {
    const bytes = floats * 4;
    // A smaller buffer may still be referenced by recorded, unsubmitted work: replace it, never destroy it here.
    if (!partials || partials.size < bytes) partials = createStorage(ctx.gpu, "matmul: bias partial sums", bytes);
    return bind(partials, 0, bytes);
  }

  return {
    matmul,
    biasBackward(r, { dbias, dout, M, N }) {
      const blocks = Math.ceil(M / COLUMN_PARTIALS.ROWS);
      const partial = scratch(blocks * N);
      r.dispatch(columnPartials, [M, N, blocks], [partial, dout], [Math.ceil(N / COLUMN_PARTIALS.COLS), blocks]);
      r.dispatch(columnTotals, [M, N, blocks], [dbias, partial], [Math.ceil(N / (COLUMN_PARTIALS.COLS * COLUMN_PARTIALS.LANES))]);
    },
  };
}
