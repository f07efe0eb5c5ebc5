/**
 * Rotary position embeddings (shaders/rotary.wgsl), and the cos/sin table they read, computed here in float64 from
 * the family's rotary settings (rope_theta, partial rotary, Llama 3 / linear rope scaling) as HF computes inv_freq.
 */
import { grid1d } from "../workgroups.ts";
import type { KernelContext, RotaryKernels } from "./index.ts";
import type { RopeScaling } from "../../model/family.ts";

const WG = 256;

/**
 * θ_j for j < R/2: base^(−2j/R), then HF's rope scaling: "linear" divides by factor; "llama3" (transformers'
 * _compute_llama3_parameters) divides low frequencies by factor, keeps high ones, and blends the band between.
 */
export function inverseFrequencies(R: number, theta: number, scaling: RopeScaling): Float64Array {
  const half = R / 2;
  const inv = Float64Array.from({ length: half }, (_, j) => 1 / Math.pow(theta, (2 * j) / R));
  if (scaling.type === "linear") return inv.map((f) => f / scaling.factor);
  if (scaling.type === "llama3") {
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling;
    const lowWavelen = originalMaxPositions / lowFreqFactor;
    const highWavelen = originalMaxPositions / highFreqFactor;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) return f / factor;
      if (wavelen < highWavelen) return f;
      const smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  return inv;
}

/** table[t·R + j] = cos(t·θ_j), table[t·R + R/2 + j] = sin(t·θ_j), for t < T. */
export function rotaryTable(T: number, R: number, theta: number, scaling: RopeScaling): Float32Array {
  const inv = inverseFrequencies(R, theta, scaling);
  const half = R / 2;
  const table = new Float32Array(T * R);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < half; j++) {
      table[t * R + j] = Math.cos(t * inv[j]);
      table[t * R + half + j] = Math.sin(t * inv[j]);
    }
  }
  return table;
}

export async function createRotaryKernels(ctx: KernelContext): Promise<RotaryKernels> {
  const [forward, backward, forwardAt] = await Promise.all(["forward", "backward", "forwardAt"].map((entry) => ctx.shaders.pipeline("rotary", entry, { WG })));
  const record = (pipeline: GPUComputePipeline) => (r: Parameters<RotaryKernels["forward"]>[0], o: Parameters<RotaryKernels["forward"]>[1]) => {
    if (o.rotaryDim % 2 !== 0 || o.rotaryDim > o.headDim) throw new Error(`rotary: rotaryDim ${o.rotaryDim} must be even and ≤ headDim ${o.headDim}`);
    const n = o.N * o.H * o.headDim;
    const words = [n, o.T, o.H, o.headDim, o.rotaryDim, o.inp.stride, o.inp.offset, o.out.stride, o.out.offset];
    const bindings = [o.out.binding, o.inp.binding, o.table];
    if (o.positions) r.dispatch(forwardAt, words, [...bindings, o.positions], grid1d(n, WG));
    else r.dispatch(pipeline, words, bindings, grid1d(n, WG));
  };
  return { forward: record(forward), backward: record(backward) };
}
