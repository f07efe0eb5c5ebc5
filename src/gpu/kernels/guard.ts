/**
 * The step status and divergence guard (shaders/guard.wgsl): the step's loss sum accumulated on the GPU, and a
 * check after the gradient norm that marks a non-finite step (sticky) so AdamW leaves the weights alone — the
 * trainer then reads the status asynchronously instead of waiting on the GPU before every optimizer step.
 */
import type { GuardKernels, KernelContext } from "./index.ts";

const WG = 256;

/** The status words (see shaders/guard.wgsl). */
export const STATUS = { normSquared: 0, lossSum: 1, diverged: 2, rawNormSquared: 3, words: 4 } as const;

export async function createGuardKernels(ctx: KernelContext): Promise<GuardKernels> {
  const [addSum, check] = await Promise.all([
    ctx.shaders.pipeline("guard", "addSum", { WG }),
    ctx.shaders.pipeline("guard", "check", { WG }),
  ]);
  return {
    addSum(r, o) {
      r.dispatch(addSum, [o.n], [o.status, o.terms], [1]);
    },
    check(r, o) {
      r.dispatch(check, [0], [o.status], [1]);
    },
  };
}
