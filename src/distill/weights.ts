/**
 * Per-token loss weights: how much the student is trained to produce each token of its sequence. The prompt is
 * given, not learned (0 by default); the label is the point (1); the rationale is the auxiliary signal whose
 * weight α the experiments vary. The answer phrase around a label ("So the answer is … .") counts as label.
 */
import { UserError } from "../errors.ts";
import type { PieceKind } from "./placement.ts";

export interface LossWeights {
  prompt: number;
  label: number;
  /** α */
  rationale: number;
}

export const DEFAULT_WEIGHTS: LossWeights = { prompt: 0, label: 1, rationale: 1 };

export type SpanKind = "prompt" | PieceKind;

export function weightOf(kind: SpanKind, weights: LossWeights): number {
  return kind === "format" ? weights.label : weights[kind];
}

export function checkWeights(weights: LossWeights): LossWeights {
  for (const [part, value] of Object.entries(weights)) {
    if (!Number.isFinite(value) || value < 0) throw new UserError(`loss weight "${part}" must be a number >= 0, got ${value}`);
  }
  return weights;
}

/** One weight per token, given each span's kind and token count, in sequence order. */
export function tokenWeights(spans: ReadonlyArray<{ kind: SpanKind; length: number }>, weights: LossWeights): number[] {
  return spans.flatMap((span) => new Array<number>(span.length).fill(weightOf(span.kind, weights)));
}
