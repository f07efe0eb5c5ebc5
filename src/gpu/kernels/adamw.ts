/**
 * AdamW and the global gradient norm (shaders/adamw.wgsl). Both work on n floats that may exceed what one binding
 * can address (maxStorageBufferBindingSize: 128 MiB on some adapters, GPT-2's parameters are ~500 MB), so they
 * walk the buffers in chunks bound at offsets. A chunk is a whole number of norm-reduction blocks, which keeps the
 * norm independent of the chunking (and its offsets multiples of 256 bytes).
 */
import { grid1d } from "../workgroups.ts";
import { f32bits, type Binding } from "../recorder.ts";
import type { AdamWKernels, KernelContext } from "./index.ts";
import { Scratch } from "./scratch.ts";
import { bindingLimit } from "../chunks.ts";

const WG = 256;
const ITEMS = 16;
const BLOCK = WG * ITEMS; // floats per norm-reduction workgroup

export interface AdamWKernelOptions {
  /** Largest binding to use, in bytes (default: the device's maxStorageBufferBindingSize); tests lower it. */
  maxBindingBytes?: number;
}

/** The floats [first, first+count) of a tensor binding. */
function slice(b: Binding, first: number, count: number): Binding {
  return { buffer: b.buffer, offset: (b.offset ?? 0) + first * 4, size: count * 4 };
}

export async function createAdamWKernels(ctx: KernelContext, options: AdamWKernelOptions = {}): Promise<AdamWKernels> {
  const constants = { WG, ITEMS };
  const [step, partialSquares, total] = await Promise.all(
    ["step", "partialSquares", "total"].map((entry) => ctx.shaders.pipeline("adamw", entry, constants)),
  );
  const maxBytes = Math.min(options.maxBindingBytes ?? Infinity, bindingLimit(ctx));
  const chunkFloats = Math.floor(maxBytes / (BLOCK * 4)) * BLOCK;
  if (chunkFloats === 0) throw new Error(`maxBindingBytes ${maxBytes} is below one block of ${BLOCK * 4} bytes`);
  const partialSums = new Scratch(ctx.gpu, "adamw: norm partial sums");

  // Every chunk holds at most chunkFloats ≤ limit/4 < 2³⁰ floats, so the kernels' u32 indices within a chunk
  // (i < count, block·WG·ITEMS + j·WG + lid < count) cannot overflow whatever n is; partialBase + block < n/BLOCK.
  function chunks(n: number): { first: number; count: number }[] {
    const list = [];
    for (let first = 0; first < n; first += chunkFloats) list.push({ first, count: Math.min(chunkFloats, n - first) });
    return list;
  }

  return {
    gradNormSquared(r, { out, grads, n }) {
      const blocks = Math.ceil(n / BLOCK);
      const scratch = partialSums.floats(blocks);
      for (const { first, count } of chunks(n)) {
        const chunkBlocks = Math.ceil(count / BLOCK);
        r.dispatch(partialSquares, [count, first / BLOCK], [scratch, slice(grads, first, count)], grid1d(chunkBlocks, 1));
      }
      r.dispatch(total, [blocks, 0], [out, scratch], [1]);
    },

    adamw(r, o) {
      const words = [
        f32bits(1 - o.beta1),
        f32bits(o.beta1),
        f32bits(1 - o.beta2),
        f32bits(o.beta2),
        f32bits(o.eps),
        f32bits(1 - o.lr * o.weightDecay),
        f32bits(o.lr / (1 - Math.pow(o.beta1, o.step))),
        f32bits(Math.sqrt(1 - Math.pow(o.beta2, o.step))),
        f32bits(o.maxNorm),
      ];
      for (const { first, count } of chunks(o.n)) {
        const tensors = [o.params, o.grads, o.m, o.v].map((b) => slice(b, first, count));
        r.dispatch(step, [count, ...words], [...tensors, o.normSquared], grid1d(count, WG));
      }
    },
  };
}
