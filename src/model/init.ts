/**
 * Random initialisation as HF's *PreTrainedModel._init_weights does it (GPT-2's variant): every matmul weight and
 * embedding ~ N(0, 0.02²), except the two residual projections per block (attention output, MLP down/proj), whose
 * std is scaled by 1/√(2·nLayer) so the residual stream's variance does not grow with depth; biases 0; norm gains 1
 * (0 for Gemma's (1 + w) RMSNorm, which is the same identity), LayerNorm shifts 0. Seeded: the same seed gives
 * bit-identical parameters.
 */
import { type ParamLayout, tensorView } from "./params.ts";
import { Rng } from "./rng.ts";

export const INIT_STD = 0.02;

const RESIDUAL_PROJECTIONS = new Set(["o.weight", "proj.weight"]);
const NORM_GAINS = new Set(["norm1.weight", "norm2.weight", "normF.weight", "qNorm.weight", "kNorm.weight", "attnOutNorm.weight", "mlpOutNorm.weight"]);

/** A fresh flat parameter array in `layout`, filled from `rng` (a seed makes its own generator). */
export function initParams(layout: ParamLayout, rng: Rng | number): Float32Array {
  const random = typeof rng === "number" ? new Rng(rng) : rng;
  const params = new Float32Array(layout.size);
  const residualStd = INIT_STD / Math.sqrt(2 * layout.config.nLayer);
  const gain = layout.config.arch.norm === "rms1p" ? 0 : 1;
  for (const slot of layout.slots) {
    const view = tensorView(params, slot);
    if (slot.shape.length === 2) random.fillNormal(view, RESIDUAL_PROJECTIONS.has(slot.role) ? residualStd : INIT_STD);
    else if (NORM_GAINS.has(slot.role)) view.fill(gain);
    // biases and LayerNorm shifts stay 0
  }
  return params;
}
