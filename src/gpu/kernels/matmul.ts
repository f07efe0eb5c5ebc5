/**
 * Matrix products and the bias gradient (shaders/matmul.wgsl). One shader serves all four transpose variants
 * (override constants, so each variant is its own specialised pipeline) and two tile sizes: 128×128 tiles for
 * big products, 64×64 tiles when 128×128 would leave too few workgroups to fill the GPU (one compact tiling on
 * adapters with only the minimum 16 KiB of workgroup memory), and K split into deterministic partial products when
 * even that leaves the GPU mostly idle (the weight gradients: 768×768 outputs summed over K = B·T = 8192).
 */
import { bind, createStorage } from "../buffers.ts";
import { grid1d } from "../workgroups.ts";
import type { Recorder } from "../recorder.ts";
import type { KernelContext, MatmulKernels } from "./index.ts";
import { Scratch } from "./scratch.ts";

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
/** Threads a product should keep busy (an H100/H200 holds ~270k resident); fewer → split K, up to 16 ways … */
const THREADS_WANTED = 128 * 1024;
/** … but only when each split still covers at least this much of K. */
const MIN_SPLIT_DEPTH = 256;
const MAX_SPLITS = 16;

export interface MatmulOptions {
  /** Use only this tiling (benchmarks, tests); by default the tiling is chosen per product shape. */
  tiling?: MatmulTiling;
  /** Split K this many ways (tests); by default products that fill too little of the GPU are split. */
  splitK?: number;
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
  const [splitSum, columnPartials, columnTotals] = await Promise.all([
    ctx.shaders.pipeline("matmul", "splitSum"),
    ctx.shaders.pipeline("matmul", "columnPartials", COLUMN_PARTIALS),
    ctx.shaders.pipeline("matmul", "columnTotals", COLUMN_PARTIALS),
  ]);
  const noBias = bind(createStorage(ctx.gpu, "matmul: no bias", 16));
  const splitProducts = new Scratch(ctx.gpu, "matmul: split-K partial products");
  const columnSums = new Scratch(ctx.gpu, "matmul: bias partial sums");

  function chooseTiling(M: number, N: number): MatmulTiling {
    if (tilings.length === 1) return tilings[0];
    const largeTiles = Math.ceil(M / tileRows(LARGE_TILING)) * Math.ceil(N / tileCols(LARGE_TILING));
    return largeTiles >= LARGE_TILES_WANTED ? LARGE_TILING : SMALL_TILING;
  }

  /** How many ways to split K, and the depth of each split (a multiple of every BK). */
  function chooseSplit(tiling: MatmulTiling, M: number, N: number, K: number): { splits: number; depth: number } {
    const threads = Math.ceil(M / tileRows(tiling)) * Math.ceil(N / tileCols(tiling)) * tiling.wgM * tiling.wgN;
    const wanted = options.splitK ?? (threads < THREADS_WANTED / 2 ? Math.min(Math.ceil(THREADS_WANTED / threads), Math.floor(K / MIN_SPLIT_DEPTH), MAX_SPLITS) : 1);
    if (wanted <= 1 || K <= 1) return { splits: 1, depth: K };
    const depth = Math.ceil(K / wanted / 16) * 16;
    return { splits: Math.ceil(K / depth), depth }; // every split starts inside K
  }

  function matmul(r: Recorder, o: Parameters<MatmulKernels["matmul"]>[1]): void {
    const { M, N, K, transA = false, transB = false } = o;
    const tiling = chooseTiling(M, N);
    const pipeline = pipelines[variants.findIndex((v) => v.tiling === tiling && v.transA === transA && v.transB === transB)];
    const flags = (o.bias ? HAS_BIAS : 0) | (o.accumulate ? ACCUMULATE : 0);
    const bias = o.bias ?? noBias;
    const { splits, depth } = chooseSplit(tiling, M, N, K);
    const grid = [Math.ceil(N / tileCols(tiling)), Math.ceil(M / tileRows(tiling)), splits] as const;
    if (splits === 1) {
      r.dispatch(pipeline, [M, N, K, flags, depth], [o.out, o.a, o.b, bias], grid);
      return;
    }
    const partials = splitProducts.floats(splits * M * N);
    r.dispatch(pipeline, [M, N, K, 0, depth], [partials, o.a, o.b, noBias], grid);
    r.dispatch(splitSum, [M * N, N, splits, flags], [o.out, partials, bias], grid1d(M * N, 256));
  }

  return {
    matmul,
    biasBackward(r, { dbias, dout, M, N }) {
      const blocks = Math.ceil(M / COLUMN_PARTIALS.ROWS);
      const partial = columnSums.floats(blocks * N);
      r.dispatch(columnPartials, [M, N, blocks], [partial, dout], [Math.ceil(N / COLUMN_PARTIALS.COLS), blocks]);
      r.dispatch(columnTotals, [M, N, blocks], [dbias, partial], [Math.ceil(N / (COLUMN_PARTIALS.COLS * COLUMN_PARTIALS.LANES))]);
    },
  };
}
