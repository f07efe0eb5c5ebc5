/** LoRA's elementwise kernels (dropout with a regenerable mask, strided column add and gather), see shaders/lora.wgsl. */
import { f32bits } from "../recorder.ts";
import { grid1d } from "../workgroups.ts";
import type { KernelContext, LoraKernels } from "./index.ts";

const WG = 256;

export async function createLoraKernels(ctx: KernelContext): Promise<LoraKernels> {
  const [dropout, addColumns, gatherColumns] = await Promise.all(["dropout", "addColumns", "gatherColumns"].map((entry) => ctx.shaders.pipeline("lora", entry, { WG })));
  return {
    dropout(r, o) {
      r.dispatch(dropout, [o.n, 0, 0, 0, f32bits(1 / (1 - o.p)), o.key >>> 0, f32bits(o.p), o.accumulate ? 1 : 0], [o.out, o.inp], grid1d(o.n, WG));
    },
    addColumns(r, o) {
      const n = o.rows * o.width;
      r.dispatch(addColumns, [n, o.width, o.stride, o.offset, f32bits(o.scale), 0, 0, 0], [o.out, o.inp], grid1d(n, WG));
    },
    gatherColumns(r, o) {
      const n = o.rows * o.width;
      r.dispatch(gatherColumns, [n, o.width, o.stride, o.offset, f32bits(o.scale), 0, 0, 0], [o.out, o.inp], grid1d(n, WG));
    },
  };
}
