/**
 * Float64 reference of one LoRA adapter on a linear layer (src/model/lora.ts), plain loops over ops.ts:
 *   forward   delta[N, rows] = scale·(m ⊙ x)·Aᵀ·Bᵀ   (m: the dropout multipliers, keep/(1 − p) or 0; all 1 without dropout)
 *   backward  for g = ∂loss/∂delta: dB = scale·gᵀ·h, dA = scale·(g·B)ᵀ·(m ⊙ x), dx = m ⊙ (scale·(g·B)·A), with h = (m ⊙ x)·Aᵀ
 * The caller adds delta into the adapter's rows of the base output and dx into the base input gradient.
 */
import { dropoutKeep } from "../model/lora.ts";
import * as ops from "./ops.ts";

export interface AdapterShape {
  N: number;
  inDim: number;
  rows: number;
  rank: number;
  scale: number;
}

/** The dropout multipliers of n inputs under `key` (null: no dropout). */
export function dropoutMultipliers(key: number, n: number, p: number): Float64Array | null {
  if (p === 0) return null;
  const m = new Float64Array(n);
  for (let i = 0; i < n; i++) m[i] = dropoutKeep(key, i, p) ? 1 / (1 - p) : 0;
  return m;
}

function times(x: Float64Array, m: Float64Array | null): Float64Array {
  if (!m) return x;
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * m[i];
  return out;
}

export function loraForward(x: Float64Array, A: Float64Array, B: Float64Array, s: AdapterShape, mask: Float64Array | null = null): Float64Array {
  const h = ops.matmul(times(x, mask), A, null, s.N, s.rank, s.inDim, false, true);
  const delta = ops.matmul(h, B, null, s.N, s.rows, s.rank, false, true);
  for (let i = 0; i < delta.length; i++) delta[i] *= s.scale;
  return delta;
}

export function loraBackward(g: Float64Array, x: Float64Array, A: Float64Array, B: Float64Array, s: AdapterShape, mask: Float64Array | null = null): { dA: Float64Array; dB: Float64Array; dx: Float64Array } {
  const xd = times(x, mask);
  const h = ops.matmul(xd, A, null, s.N, s.rank, s.inDim, false, true);
  const gs = g.map((v) => v * s.scale);
  const dB = ops.matmul(gs, h, null, s.rows, s.rank, s.N, true, false);
  const dh = ops.matmul(gs, B, null, s.N, s.rank, s.rows, false, false);
  const dA = ops.matmul(dh, xd, null, s.rank, s.inDim, s.N, true, false);
  const dx = times(ops.matmul(dh, A, null, s.N, s.inDim, s.rank, false, false), mask);
  return { dA, dB, dx };
}
