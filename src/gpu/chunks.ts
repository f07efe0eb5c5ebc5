/**
 * Keeping every binding within the adapter's maxStorageBufferBindingSize (128 MiB on llvmpipe and WebGPU's
 * default; GPT-2's token embedding alone is 147 MiB). Work over a tensor larger than that is split into
 * consecutive chunks, each bound at its own offset; this file plans those chunks.
 *
 * Why u32 indexing stays safe: WGSL indexes arrays with u32, and a kernel's flat index into a binding is at most
 * the binding's size in elements. Bindings are bounded by the limit (at most 4 GiB, i.e. 2³⁰ f32s, on any adapter
 * Dawn exposes), so once nothing is bound above the limit every index a kernel forms into a binding fits a u32.
 * Products that would not (token id × width over a whole vocabulary, row × V over all positions) are exactly what
 * the chunking removes: kernels index relative to their chunk's start. `assertU32` guards the dispatchers.
 */
import type { KernelContext } from "./kernels/index.ts";

/** Byte offsets of bindings must be multiples of this (minStorageBufferOffsetAlignment on every adapter). */
export const BINDING_OFFSET_ALIGN = 256;

export interface Chunk {
  /** First item of the chunk. */
  first: number;
  /** Items in it. */
  count: number;
}

/** The largest storage binding kernels may use: the adapter's, or less where a test asks (KernelContext). */
export function bindingLimit(ctx: KernelContext): number {
  return Math.min(ctx.maxBindingBytes ?? Infinity, ctx.gpu.device.limits.maxStorageBufferBindingSize, MAX_BINDING_BYTES);
}

/** Never bind more than this, whatever an adapter allows: 2³² − 4 bytes keeps every f32 index below 2³⁰. */
export const MAX_BINDING_BYTES = 2 ** 32 - 4;

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * Splits `count` items of `itemBytes` bytes each into consecutive chunks of at most `maxBytes` bytes, every chunk
 * (but the last, which takes the rest) the same size, every start a multiple of `alignItems` and a byte offset
 * that is a multiple of 256 (so each can be bound at its own offset). Throws when not even one aligned group of
 * items fits.
 */
export function planChunks(count: number, itemBytes: number, maxBytes: number, alignItems = 1): Chunk[] {
  if (!(itemBytes > 0) || !Number.isInteger(count) || count < 0) throw new Error(`bad chunk request: ${count} items of ${itemBytes} bytes`);
  // the smallest step whose byte size is a multiple of 256, and of alignItems items
  const byteAlign = BINDING_OFFSET_ALIGN / gcd(itemBytes, BINDING_OFFSET_ALIGN);
  const step = (alignItems * byteAlign) / gcd(alignItems, byteAlign);
  const fits = Math.floor(maxBytes / itemBytes);
  const size = count * itemBytes <= maxBytes ? count : Math.floor(fits / step) * step;
  if (size === 0 && count > 0) {
    throw new Error(`cannot bind ${step} items of ${itemBytes} bytes (one aligned chunk) within a ${maxBytes}-byte binding limit`);
  }
  const chunks: Chunk[] = [];
  for (let first = 0; first < count; first += size) chunks.push({ first, count: Math.min(size, count - first) });
  return chunks;
}

/** Throws unless `n` (an element count or index bound a kernel computes in u32) is below 2³². */
export function assertU32(n: number, what: string): void {
  if (!(n <= 0xffffffff)) throw new Error(`${what} (${n}) does not fit the 32-bit indices kernels use`);
}

/** Throws unless a binding's size is within the limit (a clear error instead of WebGPU's validation message). */
export function assertBindable(bytes: number, limit: number, what: string): void {
  if (bytes > limit) throw new Error(`${what} needs a ${bytes}-byte binding, over the ${limit}-byte limit: it must be chunked`);
}
