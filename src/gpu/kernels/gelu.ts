/** GELU (GPT-2's tanh approximation), forward and backward, see shaders/gelu.wgsl. */
import { grid1d } from "../workgroups.ts";
import type { GeluKernels, KernelContext } from "./index.ts";

const WG = 256;

export async function createGeluKernels(ctx: KernelContext): Promise<GeluKernels> {
  const [forward, backward] = await Promise.all([
    ctx.shaders.pipeline("gelu", "forward", { WG }),
    ctx.shaders.pipeline("gelu", "backward", { WG }),
  ]);
  return {
    forward(r, o) {
      r.dispatch(forward, [o.n], [o.out, o.inp], grid1d(o.n, WG));
    },
    backward(r, o) {
      r.dispatch(backward, [o.n], [o.dinp, o.inp, o.dout], grid1d(o.n, WG));
    },
  };
}
