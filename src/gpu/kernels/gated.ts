/** Gated MLP activations (SwiGLU, GeGLU), forward and backward, see shaders/gated.wgsl. */
import { grid1d } from "../grid.ts";
import type { GatedKernels, KernelContext } from "./index.ts";

const WG = 256;
const ACTIVATIONS = { swiglu: 0, geglu: 1 } as const;

export async function createGatedKernels(ctx: KernelContext): Promise<GatedKernels> {
  const kinds = Object.keys(ACTIVATIONS) as (keyof typeof ACTIVATIONS)[];
  const pipelines = await Promise.all(
    kinds.map(async (kind) => {
      const constants = { WG, ACT: ACTIVATIONS[kind] };
      const [forward, backward] = await Promise.all([ctx.shaders.pipeline("gated", "forward", constants), ctx.shaders.pipeline("gated", "backward", constants)]);
      return [kind, { forward, backward }] as const;
    }),
  );
  const byKind = new Map(pipelines);
  return {
    forward(r, o) {
      const n = o.N * o.I;
      r.dispatch(byKind.get(o.kind)!.forward, [n, o.I], [o.out, o.inp], grid1d(n, WG));
    },
    backward(r, o) {
      const n = o.N * o.I;
      r.dispatch(byKind.get(o.kind)!.backward, [n, o.I], [o.dinp, o.inp, o.dout], grid1d(n, WG));
    },
  };
}
