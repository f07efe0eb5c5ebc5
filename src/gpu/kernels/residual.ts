/** Elementwise residual add (forward) and gradient accumulation (backward), see shaders/residual.wgsl. */
import { grid1d } from "../workgroups.ts";
import type { KernelContext, ResidualKernels } from "./index.ts";

const WG = 256;

export async function createResidualKernels(ctx: KernelContext): Promise<ResidualKernels> {
  const [forward, accumulate] = await Promise.all([
    ctx.shaders.pipeline("residual", "forward", { WG }),
    ctx.shaders.pipeline("residual", "accumulate", { WG }),
  ]);
  return {
    add(r, o) {
      r.dispatch(forward, [o.n], [o.out, o.a, o.b], grid1d(o.n, WG));
    },
    accumulate(r, o) {
      r.dispatch(accumulate, [o.n], [o.dst, o.src], grid1d(o.n, WG));
    },
  };
}
