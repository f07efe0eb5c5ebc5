/** Weighted softmax cross-entropy with the gradient written in place of the logits (shaders/crossentropy.wgsl). */
import { MAX_GROUPS_X } from "../workgroups.ts";
import { f32bits } from "../recorder.ts";
import type { CrossEntropyKernels, KernelContext } from "./index.ts";

const WG = 256;

export async function createCrossEntropyKernels(ctx: KernelContext): Promise<CrossEntropyKernels> {
  const pipeline = await ctx.shaders.pipeline("crossentropy", "main", { WG });
  return {
    crossEntropy(r, o) {
      // One workgroup per row, rows folded into y past the per-dimension limit.
      const grid = [Math.min(o.N, MAX_GROUPS_X), Math.ceil(o.N / MAX_GROUPS_X)] as const;
      r.dispatch(pipeline, [o.N, o.V, f32bits(o.gradScale)], [o.logits, o.losses, o.targets, o.weights], grid);
    },
  };
}
