/**
 * Matrix products and the bias gradient (shaders/matmul.wgsl), in two kernel families chosen per adapter: a
 * register-tiled one without workgroup memory for software adapters, and for GPUs a workgroup-tiled one. Both serve
 * all four transpose variants (override constants, so each variant is its own specialised pipeline), bias,
 * accumulation and a fused GELU epilogue. The tiled one has two tile sizes: 128×128 tiles for
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

/**
 * The kernel family: "tiled" (workgroup-memory tiles, for GPUs) or "register" (no workgroup memory, each
 * invocation an 8×8 block with a's loads uniform over the workgroup; for software adapters, where workgroup memory
 * and barriers cost more than they save). Chosen per adapter unless set (option, or COT_DISTILL_MATMUL for whole runs and tests).
 */
export type MatmulVariant = "tiled" | "register";
export const MATMUL_VARIANTS: readonly MatmulVariant[] = ["tiled", "register"];

/**
 * Invocations per workgroup of the register-tiled kernel (each computes 8×8 outputs; a workgroup 8 rows × 8·lanes
 * columns): `lanes` for products at least `narrowBelow` wide, else `narrowLanes` (narrow products such as LoRA's
 * rank-8 ones would otherwise leave most lanes on clamped columns; 8 lanes are one 256-bit SIMD vector).
 */
export interface RegisterTiling {
  lanes: number;
  narrowLanes: number;
  narrowBelow: number;
}
export const REGISTER_TILING: RegisterTiling = { lanes: 16, narrowLanes: 8, narrowBelow: 65 };

/** The variant for an adapter: software adapters get the register-tiled kernel, GPUs the workgroup-tiled one. */
export function defaultMatmulVariant(adapter: { isSoftware: boolean }, env: string | undefined = process.env.COT_DISTILL_MATMUL): MatmulVariant {
  if (env) {
    if (!(MATMUL_VARIANTS as readonly string[]).includes(env)) throw new Error(`COT_DISTILL_MATMUL=${env}: expected one of ${MATMUL_VARIANTS.join(", ")}`);
    return env as MatmulVariant;
  }
  return adapter.isSoftware ? "register" : "tiled";
}

export interface MatmulOptions {
  /** The kernel family (tests, benchmarks); by default chosen per adapter (defaultMatmulVariant). */
  variant?: MatmulVariant;
  /** Use only this tiling of the tiled kernel (benchmarks, tests); by default chosen per product shape. */
  tiling?: MatmulTiling;
  /** The register-tiled kernel's shape (benchmarks, tests). */
  registerTiling?: RegisterTiling;
  /** Split K this many ways (tests); by default products that fill too little of the GPU are split. */
  splitK?: number;
}

const HAS_BIAS = 1;
const ACCUMULATE = 2;
const GELU = 4;
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
  const variant = options.variant ?? (options.tiling ? "tiled" : defaultMatmulVariant(ctx.gpu.adapter));
  const maxWorkgroupBytes = ctx.gpu.device.limits.maxComputeWorkgroupStorageSize;
  const defaults = [LARGE_TILING, SMALL_TILING].every((t) => workgroupBytes(t) <= maxWorkgroupBytes) ? [LARGE_TILING, SMALL_TILING] : [COMPACT_TILING];
  const tilings = variant === "register" ? [] : options.tiling ? [options.tiling] : defaults;
  tilings.forEach((t) => checkTiling(t, maxWorkgroupBytes));
  const register = options.registerTiling ?? REGISTER_TILING;
  if (![register.lanes, register.narrowLanes].every((n) => Number.isInteger(n) && n >= 1)) throw new Error(`unsupported register tiling ${JSON.stringify(register)}`);
  const variants = tilings.flatMap((tiling) =>
    [false, true].flatMap((transA) => [false, true].map((transB) => ({ tiling, transA, transB }))),
  );
  const laneCounts = [...new Set([register.lanes, register.narrowLanes])];
  const transposes = laneCounts.flatMap((lanes) => [false, true].flatMap((transA) => [false, true].map((transB) => ({ lanes, transA, transB }))));
  const [pipelines, registerPipelines] = await Promise.all([
    Promise.all(
      variants.map((v) =>
        ctx.shaders.pipeline("matmul", "main", { TRANS_A: Number(v.transA), TRANS_B: Number(v.transB), WG_M: v.tiling.wgM, WG_N: v.tiling.wgN, BK: v.tiling.bk }),
      ),
    ),
    Promise.all(
      (variant === "register" ? transposes : []).map((v) =>
        ctx.shaders.pipeline("matmul", "registerTiled", { TRANS_A: Number(v.transA), TRANS_B: Number(v.transB), RT_LANES: v.lanes }),
      ),
    ),
  ]);
  const [splitSum, columnPartials, columnTotals] = await Promise.all([
    ctx.shaders.pipeline("matmul", "splitSum"),
    ctx.shaders.pipeline("matmul", "columnPartials", COLUMN_PARTIALS),
    ctx.shaders.pipeline("matmul", "columnTotals", COLUMN_PARTIALS),
  ]);
  const noBias = bind(createStorage(ctx.gpu, "matmul: no bias", 16));
  const noGelu = bind(createStorage(ctx.gpu, "matmul: no GELU output", 16));
  const splitProducts = new Scratch(ctx.gpu, "matmul: split-K partial products");
  const columnSums = new Scratch(ctx.gpu, "matmul: bias partial sums");

  function chooseTiling(M: number, N: number): MatmulTiling {
    if (tilings.length === 1) return tilings[0];
    const largeTiles = Math.ceil(M / tileRows(LARGE_TILING)) * Math.ceil(N / tileCols(LARGE_TILING));
    return largeTiles >= LARGE_TILES_WANTED ? LARGE_TILING : SMALL_TILING;
  }

  /** How many ways to split K, and the depth of each split (a multiple of 16, so of every BK and of 4). */
  function chooseSplit(threads: number, K: number): { splits: number; depth: number } {
    // A software adapter has a few CPU threads, which the output tiles alone keep busy.
    const automatic = variant === "register" ? 1 : threads < THREADS_WANTED / 2 ? Math.min(Math.ceil(THREADS_WANTED / threads), Math.floor(K / MIN_SPLIT_DEPTH), MAX_SPLITS) : 1;
    const wanted = options.splitK ?? automatic;
    if (wanted <= 1 || K <= 1) return { splits: 1, depth: K };
    const depth = Math.ceil(K / wanted / 16) * 16;
    return { splits: Math.ceil(K / depth), depth }; // every split starts inside K
  }

  /** The pipeline and workgroup grid (x, y) of a product, and the threads it keeps busy. */
  function plan(M: number, N: number, transA: boolean, transB: boolean): { pipeline: GPUComputePipeline; grid: [number, number]; threads: number } {
    if (variant === "register") {
      const lanes = N < register.narrowBelow ? register.narrowLanes : register.lanes;
      const pipeline = registerPipelines[transposes.findIndex((v) => v.lanes === lanes && v.transA === transA && v.transB === transB)];
      const grid: [number, number] = [Math.ceil(N / (8 * lanes)), Math.ceil(M / 8)];
      return { pipeline, grid, threads: grid[0] * grid[1] * lanes };
    }
    const tiling = chooseTiling(M, N);
    const pipeline = pipelines[variants.findIndex((v) => v.tiling === tiling && v.transA === transA && v.transB === transB)];
    const grid: [number, number] = [Math.ceil(N / tileCols(tiling)), Math.ceil(M / tileRows(tiling))];
    return { pipeline, grid, threads: grid[0] * grid[1] * tiling.wgM * tiling.wgN };
  }

  function matmul(r: Recorder, o: Parameters<MatmulKernels["matmul"]>[1]): void {
    const { M, N, K, transA = false, transB = false } = o;
    const { pipeline, grid, threads } = plan(M, N, transA, transB);
    const flags = (o.bias ? HAS_BIAS : 0) | (o.accumulate ? ACCUMULATE : 0) | (o.gelu ? GELU : 0);
    const bias = o.bias ?? noBias;
    const gelu = o.gelu ?? noGelu;
    const { splits, depth } = chooseSplit(threads, K);
    if (splits === 1) {
      r.dispatch(pipeline, [M, N, K, flags, depth], [o.out, o.a, o.b, bias, gelu], [...grid, 1]);
      return;
    }
    const partials = splitProducts.floats(splits * M * N);
    r.dispatch(pipeline, [M, N, K, 0, depth], [partials, o.a, o.b, noBias, noGelu], [...grid, splits]);
    r.dispatch(splitSum, [M * N, N, splits, flags], [o.out, partials, bias, gelu], grid1d(M * N, 256));
  }

  return {
    variant,
    matmul,
    biasBackward(r, { dbias, dout, M, N }) {
      const blocks = Math.ceil(M / COLUMN_PARTIALS.ROWS);
      const partial = columnSums.floats(blocks * N);
      r.dispatch(columnPartials, [M, N, blocks], [partial, dout], [Math.ceil(N / COLUMN_PARTIALS.COLS), blocks]);
      r.dispatch(columnTotals, [M, N, blocks], [dbias, partial], [Math.ceil(N / (COLUMN_PARTIALS.COLS * COLUMN_PARTIALS.LANES))]);
    },
  };
}
