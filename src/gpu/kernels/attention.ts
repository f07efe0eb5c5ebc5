/**
 * Causal multi-head self-attention, see shaders/attention.wgsl: forward and backward are sequences of three tiled
 * products over "head views" of qkv/out/dout (no permute copies) and the row softmax with its backward.
 */
import { f32bits, type Binding, type Recorder } from "../recorder.ts";
import { grid1d } from "../workgroups.ts";
import type { AttentionKernels, KernelContext } from "./index.ts";

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

interface Shape {
  B: number;
  T: number;
  C: number;
  NH: number;
}

/** A head view: tensor [B,T,stride] whose head h occupies columns offset + h·hs …. */
interface HeadView {
  binding: Binding;
  stride: number;
  offset: number;
}

function headSize({ C, NH }: Shape): number {
  if (!Number.isInteger(C / NH)) throw new Error(`attention: C=${C} is not a multiple of NH=${NH}`);
  return C / NH;
}

/** The q, k and v views of a [B,T,3C] tensor laid out as GPT-2's c_attn output. */
function qkvViews(binding: Binding, C: number): { q: HeadView; k: HeadView; v: HeadView } {
  const view = (part: number): HeadView => ({ binding, stride: 3 * C, offset: part * C });
  return { q: view(0), k: view(1), v: view(2) };
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

  // Params layout of shaders/attention.wgsl.
  const params = (s: Shape, lhs?: HeadView, rhs?: HeadView, out?: HeadView, scale = 1) => [
    s.T, s.NH, headSize(s), s.B * s.NH * s.T,
    lhs?.stride ?? 0, lhs?.offset ?? 0, rhs?.stride ?? 0, rhs?.offset ?? 0, out?.stride ?? 0, out?.offset ?? 0,
    f32bits(scale),
  ];
  const blocks = (n: number, size: number) => Math.ceil(n / size);

  /** probs[b,h,i,j≤i] = scale · l_i·r_j. */
  function recordScores(r: Recorder, s: Shape, probs: Binding, l: HeadView, rr: HeadView, scale: number) {
    const grid = [blocks(s.T, BLOCK_ROWS), blocks(s.T, BLOCK_ROWS), s.B * s.NH] as const;
    r.dispatch(scores, params(s, l, rr, undefined, scale), [probs, l.binding, rr.binding], grid);
  }
  /** out_i = scale · Σ_{j≤i} probs[i,j]·r_j (or, transposed, out_j = scale · Σ_{i≥j} probs[i,j]·r_i). */
  function recordWeightedSum(
    r: Recorder, s: Shape, out: HeadView, probs: Binding, rr: HeadView, scale: number, transposed: boolean,
  ) {
    const hs = headSize(s);
    const width = widthFor(hs);
    const pipeline = (transposed ? transposedWeightedSums : weightedSums)[width];
    const grid = [blocks(hs, THREADS * COLUMN_WIDTHS[width]), blocks(s.T, BLOCK_ROWS), s.B * s.NH] as const;
    r.dispatch(pipeline, params(s, undefined, rr, out, scale), [out.binding, probs, rr.binding], grid);
  }
  const rowGrid = (s: Shape) => grid1d(s.B * s.NH * s.T, 1);

  return {
    forward(r, o) {
      const scale = 1 / Math.sqrt(headSize(o));
      const { q, k, v } = qkvViews(o.qkv, o.C);
      recordScores(r, o, o.att, q, k, scale);
      r.dispatch(softmaxForward, params(o), [o.att], rowGrid(o));
      recordWeightedSum(r, o, { binding: o.out, stride: o.C, offset: 0 }, o.att, v, 1, false);
    },
    backward(r, o) {
      const scale = 1 / Math.sqrt(headSize(o));
      const { q, k, v } = qkvViews(o.qkv, o.C);
      const d = qkvViews(o.dqkv, o.C);
      const dout: HeadView = { binding: o.dout, stride: o.C, offset: 0 };
      recordScores(r, o, o.datt, dout, v, 1); // datt = dout·vᵀ
      recordWeightedSum(r, o, d.v, o.att, dout, 1, true); // dv = attᵀ·dout
      r.dispatch(softmaxBackward, params(o), [o.datt, o.att], rowGrid(o)); // datt → d(scaled scores)
      recordWeightedSum(r, o, d.q, o.datt, k, scale, false); // dq = scale · dscores·k
      recordWeightedSum(r, o, d.k, o.datt, q, scale, true); // dk = scale · dscoresᵀ·q
    },
  };
}
