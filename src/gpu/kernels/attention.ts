/**
 * Causal self-attention with grouped key/value heads (MHA, GQA, MQA), see shaders/attention.wgsl: forward and
 * backward are sequences of three tiled products over head views of q, k, v (in a fused qkv tensor or apart) and
 * the row softmax with its backward.
 */
import { f32bits, type Binding, type Recorder } from "../recorder.ts";
import { grid1d } from "../grid.ts";
import type { AttentionKernels, AttentionShape, KernelContext, TokenView } from "./index.ts";
import { createSoftcapKernels } from "./softcap.ts";

// Block sizes of shaders/attention.wgsl: 16×16 threads, each computing ROWS_PER_THREAD rows × TN columns.
const THREADS = 16;
const ROWS_PER_THREAD = 4;
const BLOCK_ROWS = THREADS * ROWS_PER_THREAD;
/** Softmax threads per row, warp-sized as in layernorm.ts (256 was 2–6× slower on the software adapter). */
const WG = 32;
/** Columns per thread (TN) the weighted sums are compiled for; small heads would leave most of a wide block idle. */
const COLUMN_WIDTHS = [1, 2, 4];

/** Index into COLUMN_WIDTHS of the narrowest block that covers a head of hs columns (else the widest). */
function widthFor(hs: number): number {
  const index = COLUMN_WIDTHS.findIndex((tn) => THREADS * tn >= hs);
  return index >= 0 ? index : COLUMN_WIDTHS.length - 1;
}

function group(s: AttentionShape): number {
  if (!Number.isInteger(s.NH / s.KVH)) throw new Error(`attention: NH=${s.NH} is not a multiple of KVH=${s.KVH}`);
  return s.NH / s.KVH;
}

export async function createAttentionKernels(ctx: KernelContext): Promise<AttentionKernels> {
  const pipeline = (entry: string, TN = 4) => ctx.shaders.pipeline("attention", entry, { WG, TN });
  const byWidth = (entry: string) => Promise.all(COLUMN_WIDTHS.map((tn) => pipeline(entry, tn)));
  const [scores, softmaxForward, softmaxBackward, weightedSums, transposedWeightedSums] = await Promise.all([
    pipeline("scores"),
    pipeline("softmaxForward"),
    pipeline("softmaxBackward"),
    byWidth("weightedSum"),
    byWidth("transposedWeightedSum"),
  ]);
  const softcap = await createSoftcapKernels(ctx);
  const probabilities = (s: AttentionShape) => s.B * s.NH * s.T * s.T;

  // Params layout of shaders/attention.wgsl.
  const params = (s: AttentionShape, lhs?: TokenView, rhs?: TokenView, out?: TokenView, scale = 1) => [
    s.T, s.NH, s.hs, s.B * s.NH * s.T,
    lhs?.stride ?? 0, lhs?.offset ?? 0, rhs?.stride ?? 0, rhs?.offset ?? 0, out?.stride ?? 0, out?.offset ?? 0,
    f32bits(scale), group(s),
  ];
  const blocks = (n: number, size: number) => Math.ceil(n / size);

  /** probs[b,h,i,j≤i] = scale · l_i·r_j (r: the key/value head of h). */
  function recordScores(r: Recorder, s: AttentionShape, probs: Binding, l: TokenView, rr: TokenView, scale: number) {
    const grid = [blocks(s.T, BLOCK_ROWS), blocks(s.T, BLOCK_ROWS), s.B * s.NH] as const;
    r.dispatch(scores, params(s, l, rr, undefined, scale), [probs, l.binding, rr.binding], grid);
  }
  /** out_i = scale · Σ_{j≤i} probs[i,j]·r_j, or transposed (into key/value heads) out_j = scale · Σ_{h∈group} Σ_{i≥j} probs_h[i,j]·r_h,i. */
  function recordWeightedSum(r: Recorder, s: AttentionShape, out: TokenView, probs: Binding, rr: TokenView, scale: number, transposed: boolean) {
    const width = widthFor(s.hs);
    const pipeline = (transposed ? transposedWeightedSums : weightedSums)[width];
    const heads = transposed ? s.B * s.KVH : s.B * s.NH;
    const grid = [blocks(s.hs, THREADS * COLUMN_WIDTHS[width]), blocks(s.T, BLOCK_ROWS), heads] as const;
    r.dispatch(pipeline, params(s, undefined, rr, out, scale), [out.binding, probs, rr.binding], grid);
  }
  const rowGrid = (s: AttentionShape) => grid1d(s.B * s.NH * s.T, 1);

  return {
    forward(r, o) {
      const scale = o.scale ?? 1 / Math.sqrt(o.hs);
      recordScores(r, o, o.att, o.q, o.k, scale);
      if (o.softcap) {
        const n = probabilities(o);
        softcap.forward(r, { values: o.att, n, cap: o.softcap.cap });
        r.commandEncoder().copyBufferToBuffer(o.att.buffer, o.att.offset ?? 0, o.softcap.saved.buffer, o.softcap.saved.offset ?? 0, n * 4);
      }
      r.dispatch(softmaxForward, params(o), [o.att], rowGrid(o));
      recordWeightedSum(r, o, { binding: o.out, stride: o.NH * o.hs, offset: 0 }, o.att, o.v, 1, false);
    },
    backward(r, o) {
      const scale = o.scale ?? 1 / Math.sqrt(o.hs);
      const dout: TokenView = { binding: o.dout, stride: o.NH * o.hs, offset: 0 };
      recordScores(r, o, o.datt, dout, o.v, 1); // datt = dout·vᵀ
      recordWeightedSum(r, o, o.dv, o.att, dout, 1, true); // dv = Σ_group attᵀ·dout
      r.dispatch(softmaxBackward, params(o), [o.datt, o.att], rowGrid(o)); // datt → d(scaled scores)
      if (o.softcap) softcap.backward(r, { grads: o.datt, capped: o.softcap.saved, n: probabilities(o), cap: o.softcap.cap });
      recordWeightedSum(r, o, o.dq, o.datt, o.k, scale, false); // dq = scale · dscores·k
      recordWeightedSum(r, o, o.dk, o.datt, o.q, scale, true); // dk = scale · Σ_group dscoresᵀ·q
    },
  };
}
