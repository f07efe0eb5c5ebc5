/**
 * Key/value-cache decoding (shaders/kvcache.wgsl): append a pass's keys and values to the cache, single-query
 * attention of each token against its own row's cached keys, learned positions at per-token positions, and the
 * gather of each row's last token for the head.
 */
import { f32bits } from "../recorder.ts";
import { grid1d } from "../workgroups.ts";
import type { KernelContext, KVCacheKernels } from "./index.ts";

const WG = 64;
/** Output columns per thread in attend (MAX_COLUMNS in the shader): head sizes up to MAX_COLUMNS·WG. */
const MAX_COLUMNS = 4;

export async function createKVCacheKernels(ctx: KernelContext): Promise<KVCacheKernels> {
  const [append, attend, addPositions, gather] = await Promise.all(["append", "attend", "addPositions", "gather"].map((entry) => ctx.shaders.pipeline("kvcache", entry, { WG })));
  // Params layout of shaders/kvcache.wgsl
  const words = (o: { n: number; width?: number; maxLength?: number; NH?: number; hd?: number; group?: number; inStride?: number; inOffset?: number; vStride?: number; vOffset?: number; scale?: number; softcap?: number }) => [
    o.n, o.width ?? 0, o.maxLength ?? 0, o.NH ?? 0, o.hd ?? 0, o.group ?? 1, o.inStride ?? 0, o.inOffset ?? 0, o.vStride ?? 0, o.vOffset ?? 0,
    f32bits(o.scale ?? 1), f32bits(o.softcap ?? 0),
  ];
  return {
    append(r, o) {
      const p = words({ n: o.N, width: o.width, maxLength: o.maxLength, inStride: o.k.stride, inOffset: o.k.offset, vStride: o.v.stride, vOffset: o.v.offset });
      r.dispatch(append, p, [o.kCache, o.vCache, o.k.binding, o.v.binding, o.rows, o.positions], grid1d(o.N * o.width, WG));
    },
    attend(r, o) {
      if (!Number.isInteger(o.NH / o.KVH)) throw new Error(`kvcache: NH=${o.NH} is not a multiple of KVH=${o.KVH}`);
      if (o.hd > MAX_COLUMNS * WG) throw new Error(`kvcache: head size ${o.hd} exceeds ${MAX_COLUMNS * WG}`);
      const p = words({ n: o.N, maxLength: o.maxLength, NH: o.NH, hd: o.hd, group: o.NH / o.KVH, inStride: o.q.stride, inOffset: o.q.offset, scale: o.scale ?? 1 / Math.sqrt(o.hd), softcap: o.softcap ?? 0 });
      r.dispatch(attend, p, [o.out, o.q.binding, o.kCache, o.vCache, o.rows, o.positions], grid1d(o.N * o.NH, 1));
    },
    addPositions(r, o) {
      r.dispatch(addPositions, words({ n: o.N, width: o.C }), [o.out, o.wpe, o.positions], grid1d(o.N * o.C, WG));
    },
    gather(r, o) {
      r.dispatch(gather, words({ n: o.n, width: o.C }), [o.out, o.x, o.index], grid1d(o.n * o.C, WG));
    },
  };
}
