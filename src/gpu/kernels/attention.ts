/**
 * Causal self-attention with grouped key/value heads (MHA, GQA, MQA), flash-style, see shaders/attention.wgsl:
 * the forward pass keeps only the output and two softmax statistics per row (max, 1/sum); the backward pass
 * recomputes the probabilities from q, k and them — one pass for dq (and D = Σ_j p·dout·v per row), one for dk and
 * dv. No T×T buffer anywhere.
 */
import { f32bits, type Binding, type Recorder } from "../recorder.ts";
import type { AttentionKernels, AttentionShape, KernelContext, TokenView } from "./index.ts";

/** Rows per workgroup (one invocation per row). */
const WG = 32;
/** Private rows in the shader are sized for this (shaders/attention.wgsl MAX_HS). */
export const MAX_HEAD_SIZE = 256;

function group(s: AttentionShape): number {
  if (!Number.isInteger(s.NH / s.KVH)) throw new Error(`attention: NH=${s.NH} is not a multiple of KVH=${s.KVH}`);
  if (s.hs > MAX_HEAD_SIZE) throw new Error(`attention: head size ${s.hs} is over the kernels' ${MAX_HEAD_SIZE}`);
  return s.NH / s.KVH;
}

const sameBinding = (a: Binding, b: Binding) => a.buffer === b.buffer && (a.offset ?? 0) === (b.offset ?? 0) && a.size === b.size;

export async function createAttentionKernels(ctx: KernelContext): Promise<AttentionKernels> {
  const [forward, queryGradients, keyValueGradients, keyValueGradientsShared] = await Promise.all(
    ["forward", "queryGradients", "keyValueGradients", "keyValueGradientsShared"].map((entry) => ctx.shaders.pipeline("attention", entry, { WG })),
  );

  // Params layout of shaders/attention.wgsl; grad/dv: the gradient views a backward kernel writes.
  type Options = AttentionShape & { q: TokenView; k: TokenView; v: TokenView; scale?: number; softcap?: number };
  const params = (o: Options, grad?: TokenView, dv?: TokenView) => [
    o.T, o.NH, o.hs, group(o),
    o.q.stride, o.q.offset, o.k.stride, o.k.offset, o.v.stride, o.v.offset,
    grad?.stride ?? 0, grad?.offset ?? 0, dv?.stride ?? 0, dv?.offset ?? 0,
    f32bits(o.scale ?? 1 / Math.sqrt(o.hs)), f32bits(o.softcap ?? 0),
  ];
  const grid = (o: AttentionShape, heads: number) => [Math.ceil(o.T / WG), heads, o.B] as const;
  const inputs = (o: Options) => [o.q.binding, o.k.binding, o.v.binding];

  return {
    forward(r, o) {
      r.dispatch(forward, params(o), [...inputs(o), o.out, o.stats], grid(o, o.NH));
    },
    backward(r, o) {
      r.dispatch(queryGradients, params(o, o.dq), [...inputs(o), o.dout, o.stats, o.dq.binding, o.delta], grid(o, o.NH));
      const kv = [...inputs(o), o.dout, o.stats, o.delta];
      if (sameBinding(o.dk.binding, o.dv.binding)) {
        r.dispatch(keyValueGradientsShared, params(o, o.dk, o.dv), [...kv, o.dk.binding], grid(o, o.KVH));
      } else if (o.dk.binding.buffer === o.dv.binding.buffer) {
        throw new Error("attention: dk and dv must be views of one binding or of different buffers");
      } else {
        r.dispatch(keyValueGradients, params(o, o.dk, o.dv), [...kv, o.dk.binding, o.dv.binding], grid(o, o.KVH));
      }
    },
  };
}
