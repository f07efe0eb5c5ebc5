/**
 * GPT-2's random initialisation (as in HF's GPT2PreTrainedModel._init_weights): every matmul weight and both
 * embeddings ~ N(0, 0.02²), except the two residual projections per block (attn.c_proj, mlp.c_proj), whose std is
 * scaled by 1/√(2·nLayer) so the residual stream's variance does not grow with depth; biases 0; LayerNorm gain 1,
 * shift 0. Seeded, so the same seed gives bit-identical parameters.
 */
import { type ParamLayout, tensorView } from "./params.ts";
import { Rng } from "./rng.ts";

export const INIT_STD = 0.02;

const isResidualProjection = (name: string) => name.endsWith("attn.c_proj.weight") || name.endsWith("mlp.c_proj.weight");

/** A fresh flat parameter array in `layout`, filled from `rng` (a seed makes its own generator). */
export function initParams(layout: ParamLayout, rng: Rng | number): Float32Array {
  const random = typeof rng === "number" ? new Rng(rng) : rng;
  const params = new Float32Array(layout.size);
  const residualStd = INIT_STD / Math.sqrt(2 * layout.config.nLayer);
  for (const spec of layout.tensors) {
    const view = tensorView(params, spec);
    if (spec.shape.length === 2) random.fillNormal(view, isResidualProjection(spec.name) ? residualStd : INIT_STD);
    else if (spec.name.includes("ln_") && spec.name.endsWith(".weight")) view.fill(1);
    // biases and LayerNorm shifts stay 0
  }
  return params;
}
