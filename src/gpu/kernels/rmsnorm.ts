/**
 * RMSNorm forward and backward, see shaders/rmsnorm.wgsl. Rows are read through token views, so the same kernels
 * serve the residual stream and Qwen3's per-head q/k norms inside the fused qkv activations. The weight gradient
 * goes through per-row-block partial sums (deterministic, no atomics), split as in layernorm.ts.
 */
import { f32bits } from "../recorder.ts";
import { grid1d } from "../workgroups.ts";
import { denseView, type KernelContext, type RMSNormKernels, type TokenView } from "./index.ts";
import { rowBlocks } from "./layernorm.ts";
import { Scratch } from "./scratch.ts";

const WG = 32; // a warp per row, as layernorm.ts

export async function createRMSNormKernels(ctx: KernelContext): Promise<RMSNormKernels> {
  const [forward, residualForward, backwardInput, columnPartials, columnTotals] = await Promise.all(
    ["forward", "residualForward", "backwardInput", "columnPartials", "columnTotals"].map((entry) => ctx.shaders.pipeline("rmsnorm", entry, { WG })),
  );
  const partialSums = new Scratch(ctx.gpu, "rmsnorm column partials");
  const params = (o: { N: number; C: number; H?: number; eps?: number; gainOffset?: number; accumulate?: boolean }, inp: TokenView, out: TokenView) => {
    const rows = o.N * (o.H ?? 1);
    const { rowsPerBlock, blocks } = rowBlocks(rows);
    return {
      rows, blocks,
      words: [rows, o.C, o.H ?? 1, inp.stride, inp.offset, out.stride, out.offset, f32bits(o.eps ?? 0), f32bits(o.gainOffset ?? 0), o.accumulate === false ? 0 : 1, rowsPerBlock, blocks],
    };
  };
  return {
    forward(r, o) {
      const { rows, words } = params(o, o.inp, o.out);
      r.dispatch(forward, words, [o.out.binding, o.rstd, o.inp.binding, o.weight], grid1d(rows, 1));
    },
    residualForward(r, o) {
      const { rows, words } = params(o, denseView(o.residual, o.C), denseView(o.out, o.C));
      r.dispatch(residualForward, words, [o.out, o.rstd, o.residual, o.weight, o.a, o.b], grid1d(rows, 1));
    },
    backward(r, o) {
      const { rows, blocks, words } = params(o, o.inp, o.dout);
      r.dispatch(backwardInput, words, [o.dinp, o.dout.binding, o.inp.binding, o.weight, o.rstd], grid1d(rows, 1));
      const partials = partialSums.floats(blocks * o.C);
      r.dispatch(columnPartials, words, [partials, o.dout.binding, o.inp.binding, o.rstd], [Math.ceil(o.C / WG), blocks]);
      r.dispatch(columnTotals, words, [o.dweight, partials], [Math.ceil(o.C / WG)]);
    },
  };
}
