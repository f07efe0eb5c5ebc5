/** Soft-capping x → cap·tanh(x/cap) in place, and its backward, see shaders/softcap.wgsl. */
import { grid1d } from "../grid.ts";
import { f32bits } from "../recorder.ts";
import type { KernelContext, SoftcapKernels } from "./index.ts";

const WG = 256;

export async function createSoftcapKernels(ctx: KernelContext): Promise<SoftcapKernels> {
  const [forward, backward] = await Promise.all(["forward", "backward"].map((entry) => ctx.shaders.pipeline("softcap", entry, { WG })));
  return {
    forward(r, o) {
      r.dispatch(forward, [o.n, f32bits(o.cap)], [o.values], grid1d(o.n, WG));
    },
    backward(r, o) {
      r.dispatch(backward, [o.n, f32bits(o.cap)], [o.grads, o.capped], grid1d(o.n, WG));
    },
  };
}
