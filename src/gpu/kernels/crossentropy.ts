/**
 * The LM head fused with its weighted cross-entropy, chunked over rows and vocabulary (shaders/crossentropy.wgsl
 * says what each pass computes). Only listed rows run — the positions whose loss weight is non-zero — R rows at a
 * time through a logits chunk of [V, R] floats, so memory is O(R·V) instead of O(N·V); the head weight [V, C] is
 * bound a vocabulary slice at a time (planChunks), so neither it nor its gradient is ever bound above the limit.
 * The backward of the head runs chunk by chunk right after its loss, while the chunk's logits are at hand.
 */
import { bind, createStorage } from "../buffers.ts";
import { grid1d } from "../workgroups.ts";
import { f32bits, type Binding, type Recorder } from "../recorder.ts";
import { assertBindable, assertU32, bindingLimit, planChunks, type Chunk } from "../chunks.ts";
import type { CrossEntropyKernels, HeadRows, HeadWorkspace, KernelContext, MatmulKernels } from "./index.ts";

const WG = 256;
const COLS = 16;
const LANES = 16;
const LOSS = 1;
const GRADIENT = 2;
/** Vocabulary slices start at multiples of this, so slices of W [V, C] and of logits [V, R] both start 256-byte aligned. */
const VOCAB_ALIGN = 64;
/** What a logits chunk may take at most (it is also bound whole, so never above the binding limit either). */
export const HEAD_LOGITS_BYTES = 64 << 20;

/** Rows per head chunk for N positions and a vocabulary of V: as many as fit HEAD_LOGITS_BYTES (or the limit), ≥ 1. */
export function headRowChunk(N: number, V: number, maxBindingBytes = Infinity): number {
  const budget = Math.min(HEAD_LOGITS_BYTES, maxBindingBytes);
  return Math.max(1, Math.min(N, Math.floor(budget / (4 * V))));
}

/** Floats of each head workspace buffer (see HeadWorkspace), for DecoderModel and the memory plan alike. */
export function headWorkspaceFloats(N: number, V: number, C: number, training: boolean, maxBindingBytes = Infinity): { rowChunk: number; x: number; logits: number; dx: number } {
  const rowChunk = headRowChunk(N, V, maxBindingBytes);
  return { rowChunk, x: rowChunk * C, logits: V * rowChunk, dx: training ? rowChunk * C : 0 };
}

/** The vocabulary slices the head weight [V, C] is bound in. */
export function headVocabChunks(V: number, C: number, maxBindingBytes: number): Chunk[] {
  return planChunks(V, 4 * C, maxBindingBytes, VOCAB_ALIGN);
}

/** floats [first, first+count) of a binding. */
function floats(b: Binding, first: number, count: number): Binding {
  return { buffer: b.buffer, offset: (b.offset ?? 0) + first * 4, size: count * 4 };
}

export async function createCrossEntropyKernels(ctx: KernelContext, matmul: MatmulKernels): Promise<CrossEntropyKernels> {
  const [gather, scatter, columns, rowSums] = await Promise.all([
    ctx.shaders.pipeline("crossentropy", "gatherRows", { WG }),
    ctx.shaders.pipeline("crossentropy", "scatterRows", { WG }),
    ctx.shaders.pipeline("crossentropy", "columns", { COLS, LANES }),
    ctx.shaders.pipeline("crossentropy", "rowSums", { WG }),
  ]);
  const limit = bindingLimit(ctx);
  // stand-ins for bindings a pass does not read (two: a buffer may not be bound writable and read-only at once)
  const none = bind(createStorage(ctx.gpu, "crossentropy: unused input", 16));
  const noLosses = bind(createStorage(ctx.gpu, "crossentropy: unused losses", 16));

  // Indices the passes form: v·R + i < V·R (the logits chunk) and rows[·]·C + c < N·C (x, dx): each below its
  // binding's size in floats, so they fit a u32 once the bindings are within the limit — checked here.
  function checkWorkspace(ws: HeadWorkspace, x: Binding, V: number, C: number): void {
    assertBindable(ws.rowChunk * V * 4, limit, "the head's logits chunk");
    assertBindable(ws.rowChunk * C * 4, limit, "the head's row chunk");
    assertBindable(x.size ?? x.buffer.size - (x.offset ?? 0), limit, "the head's input");
    assertU32(ws.rowChunk * V, "logits chunk elements");
  }

  /** logitsT[V, R] = W·xᵀ for R compact rows x [R, C], one vocabulary slice at a time. */
  function recordLogits(r: Recorder, logits: Binding, x: Binding, weight: Binding, vocab: Chunk[], R: number, C: number): void {
    for (const v of vocab) {
      matmul.matmul(r, { out: floats(logits, v.first * R, v.count * R), a: floats(weight, v.first * C, v.count * C), b: floats(x, 0, R * C), M: v.count, N: R, K: C, transB: true });
    }
  }

  function gatherRows(r: Recorder, out: Binding, x: Binding, rows: HeadRows, first: number, R: number, C: number): void {
    r.dispatch(gather, [R, C, first], [floats(out, 0, R * C), x, rows.list], grid1d(R * C, WG));
  }

  function columnPass(r: Recorder, o: { logits: Binding; rows: Binding; first: number; R: number; V: number; flags: number; gradScale: number; softcap?: number; bias?: Binding; losses: Binding; targets: Binding; weights: Binding }): void {
    const words = [o.V, o.R, o.first, o.flags, f32bits(o.gradScale), f32bits(o.softcap ?? 0), o.bias ? 1 : 0];
    const grid = grid1d(Math.ceil(o.R / COLS), 1);
    r.dispatch(columns, words, [floats(o.logits, 0, o.V * o.R), o.losses, o.rows, o.targets, o.weights, o.bias ?? none], grid);
  }

  /** Logits only (bias, soft-cap): out [V, R] from compact rows x [R, C]. */
  function compactLogits(r: Recorder, o: { out: Binding; x: Binding; weight: Binding; bias?: Binding; count: number; V: number; C: number; softcap?: number }): void {
    assertBindable(o.count * o.V * 4, limit, "a logits block");
    recordLogits(r, o.out, o.x, o.weight, headVocabChunks(o.V, o.C, limit), o.count, o.C);
    columnPass(r, { ...o, logits: o.out, rows: none, first: 0, R: o.count, flags: 0, gradScale: 0, losses: noLosses, targets: none, weights: none });
  }

  return {
    head(r, o) {
      const { ws, rows, V, C } = o;
      checkWorkspace(ws, o.x, V, C);
      const vocab = headVocabChunks(V, C, limit);
      const gradient = o.gradScale !== 0 && o.dx !== undefined;
      if (gradient && !ws.dx) throw new Error("the head workspace has no dx buffer (built for inference)");
      const encoder = r.commandEncoder();
      encoder.clearBuffer(o.losses.buffer, o.losses.offset ?? 0, o.losses.size);
      if (gradient) encoder.clearBuffer(o.dx!.buffer, o.dx!.offset ?? 0, o.dx!.size); // rows of weight 0: no gradient
      for (let first = 0; first < rows.count; first += ws.rowChunk) {
        const R = Math.min(ws.rowChunk, rows.count - first);
        gatherRows(r, ws.x, o.x, rows, first, R, C);
        recordLogits(r, ws.logits, ws.x, o.weight, vocab, R, C);
        columnPass(r, { ...o, logits: ws.logits, rows: rows.list, first, R, flags: gradient ? LOSS | GRADIENT : LOSS });
        if (!gradient) continue;
        const dx = floats(ws.dx!, 0, R * C);
        vocab.forEach((v, i) => {
          const g = floats(ws.logits, v.first * R, v.count * R); // [v.count, R]
          const w = floats(o.weight, v.first * C, v.count * C);
          matmul.matmul(r, { out: dx, a: g, b: w, M: R, N: C, K: v.count, transA: true, accumulate: i > 0 });
          if (o.dweight) matmul.matmul(r, { out: floats(o.dweight, v.first * C, v.count * C), a: g, b: floats(ws.x, 0, R * C), M: v.count, N: C, K: R, accumulate: true });
        });
        if (o.dbias) r.dispatch(rowSums, [V, R], [o.dbias, floats(ws.logits, 0, V * R)], grid1d(V, WG));
        r.dispatch(scatter, [R, C, first], [o.dx!, dx, rows.list], grid1d(R * C, WG));
      }
    },

    logits(r, o) {
      const { ws, rows, V, C } = o;
      checkWorkspace(ws, o.x, V, C);
      if (o.count > ws.rowChunk) throw new Error(`${o.count} rows of logits asked for at once, the workspace holds ${ws.rowChunk}`);
      gatherRows(r, ws.x, o.x, rows, o.first, o.count, C);
      compactLogits(r, { ...o, out: ws.logits, x: ws.x });
    },

    compactLogits,
  };
}
