/**
 * LayerNorm forward and backward, see shaders/layernorm.wgsl. The backward's column sums (dweight, dbias) go through
 * a scratch buffer of per-row-block partial sums owned by this module, so they stay deterministic without atomics.
 */
import { createStorage, bind } from "../buffers.ts";
import { f32bits } from "../recorder.ts";
import { grid1d } from "../workgroups.ts";
import type { KernelContext, LayerNormKernels } from "./index.ts";

/**
 * Threads per row: a warp-sized workgroup, like llm.c's one warp per row. Rows of C ≤ 1600 leave wider workgroups
 * mostly waiting at the reduction barriers; on the software adapter 256 threads ran ~6× slower than 32 (N=4096, C=768).
 */
const WG = 32;
const GPT2_EPS = 1e-5;
/** At most this many row blocks: the final per-column pass is a serial loop over them. */
const MAX_BLOCKS = 256;
/** At least this many rows per block, so small batches don't spend a workgroup per row. */
const MIN_ROWS_PER_BLOCK = 32;

/** How the N rows are split for the column partial sums. */
export function rowBlocks(N: number): { rowsPerBlock: number; blocks: number } {
  const rowsPerBlock = Math.max(MIN_ROWS_PER_BLOCK, Math.ceil(N / MAX_BLOCKS));
  return { rowsPerBlock, blocks: Math.max(1, Math.ceil(N / rowsPerBlock)) };
}

export async function createLayerNormKernels(ctx: KernelContext): Promise<LayerNormKernels> {
  const [forward, residualForward, backwardInput, columnPartials, columnTotals] = await Promise.all(
    ["forward", "residualForward", "backwardInput", "columnPartials", "columnTotals"].map((entry) =>
      ctx.shaders.pipeline("layernorm", entry, { WG }),
    ),
  );

  // Grown on demand and never destroyed: dispatches already recorded may still point at an older one (the GPU
  // keeps it alive until they have run). Calls recorded one after another can share it, since dispatches in a
  // pass run in order.
  let scratch: GPUBuffer | undefined;
  const scratchFor = (floats: number): GPUBuffer => {
    if (!scratch || scratch.size < floats * 4) scratch = createStorage(ctx.gpu, "layernorm column partials", floats * 4);
    return scratch;
  };

  return {
    forward(r, o) {
      const params = [o.N, o.C, f32bits(o.eps ?? GPT2_EPS)];
      r.dispatch(forward, params, [o.out, o.mean, o.rstd, o.inp, o.weight, o.bias], grid1d(o.N, 1));
    },
    residualForward(r, o) {
      const params = [o.N, o.C, f32bits(o.eps ?? GPT2_EPS)];
      r.dispatch(residualForward, params, [o.out, o.mean, o.rstd, o.residual, o.weight, o.bias, o.a, o.b], grid1d(o.N, 1));
    },
    backward(r, o) {
      const { rowsPerBlock, blocks } = rowBlocks(o.N);
      const params = [o.N, o.C, 0, rowsPerBlock, blocks];
      r.dispatch(backwardInput, params, [o.dinp, o.dout, o.inp, o.weight, o.mean, o.rstd], grid1d(o.N, 1));
      const partials = bind(scratchFor(2 * blocks * o.C));
      r.dispatch(columnPartials, params, [partials, o.dout, o.inp, o.mean, o.rstd], [Math.ceil(o.C / WG), blocks]);
      r.dispatch(columnTotals, params, [o.dweight, o.dbias, partials], [Math.ceil(o.C / WG)]);
    },
  };
}
