/**
 * Reading a label out of generated text, and comparing it with the gold answer. The student writes labels as the
 * template does, "(A)" or "(42)"; with placement "before" the label follows the answer phrase ("So the answer is").
 */
import type { Placement, Template } from "../distill/placement.ts";

const LABEL = /\(\s*([^()]*?)\s*\)/;

/** The first parenthesised label in `text`, or null. */
export function firstLabel(text: string): string | null {
  const match = LABEL.exec(text);
  return match && match[1] !== "" ? match[1] : null;
}

export interface ParsedOutput {
  label: string | null;
  /** The generated reasoning (placement "before"), else null. */
  rationale: string | null;
}

/** What a student trained under `placement` said: the label, and for "before" the rationale in front of it. */
export function parseOutput(text: string, placement: Placement, template: Template): ParsedOutput {
  if (placement !== "before") return { label: firstLabel(text), rationale: null };
  const at = text.indexOf(template.answerPrefix);
  if (at < 0) return { label: null, rationale: text.trim() };
  return { label: firstLabel(text.slice(at + template.answerPrefix.length)), rationale: text.slice(0, at).trim() };
}

/** Whether generation can stop: the label's parenthesis has closed (after the answer phrase, for "before") — even
 *  around nothing, which a barely trained student writes, and which counts as no answer. */
export function labelWritten(text: string, placement: Placement, template: Template): boolean {
  if (placement !== "before") return text.includes(")");
  const at = text.indexOf(template.answerPrefix);
  return at >= 0 && text.includes(")", at + template.answerPrefix.length);
}

/** Case-insensitive for choice letters, numeric for numbers ("42" = "42.0"), exact otherwise (after trimming). */
export function sameLabel(predicted: string | null, gold: string): boolean {
  if (predicted === null) return false;
  const [a, b] = [predicted.trim(), gold.trim()];
  if (a.toUpperCase() === b.toUpperCase()) return true;
  const [x, y] = [Number(a.replaceAll(",", "")), Number(b.replaceAll(",", ""))];
  return a !== "" && b !== "" && Number.isFinite(x) && Number.isFinite(y) && Math.abs(x - y) < 1e-6;
}
