/**
 * Teacher completion → rationale + label, and agreement with the gold answer. The cut and split rules are the ones
 * the shipped PaLM rationales are read with (src/data/palm.ts); on top of those, a completion without the answer
 * phrase still yields its rationale (label null), and a multiple-choice answer written as the choice's text
 * ("So the answer is blotter.") is mapped back to its label.
 */
import { parsePalmOutput } from "../data/palm.ts";
import { formatNumber } from "../data/svamp.ts";
import type { Choice } from "../data/types.ts";
import type { AnswerFormat } from "./prompts.ts";

export interface ParsedCompletion {
  rationale: string;
  /** "A".."E" for multiple choice, a canonical number ("42", "2.5") for math; null when no single answer is readable. */
  label: string | null;
}

/** The teacher's own answer, before it starts inventing the next few-shot question. */
function answeredPart(completion: string): string {
  return completion.split("\n\nQ:")[0];
}

function labelFromChoiceText(answerText: string, choices: Choice[]): string | null {
  const said = normaliseText(answerText.replace(/\.\s*$/, ""));
  const match = choices.filter((c) => normaliseText(c.text) === said);
  return match.length === 1 ? match[0].label.toUpperCase() : null;
}

function firstNumber(text: string): string | null {
  const m = /-?\d[\d,]*(?:\.\d+)?|-?\.\d+/.exec(text);
  if (!m) return null;
  const value = Number(m[0].replace(/,/g, ""));
  return Number.isFinite(value) ? formatNumber(value) : null;
}

function normaliseText(text: string): string {
  return text.normalize("NFKC").trim().toLowerCase().replace(/\s+/g, " ");
}

/** A free-form answer as compared with gold: case, spacing, surrounding quotes and a final period do not count. */
function freeAnswer(text: string): string | null {
  const said = normaliseText(text).replace(/^["'(]+|["').]+$/g, "").trim();
  return said === "" ? null : said;
}

export function parseCompletion(completion: string, format: AnswerFormat, choices: Choice[] = []): ParsedCompletion {
  if (format === "free") {
    const parsed = parsePalmOutput(completion, "text");
    if (!parsed) return { rationale: answeredPart(completion).trim(), label: null };
    return { rationale: parsed.rationale, label: freeAnswer(parsed.answerText) };
  }
  const parsed = parsePalmOutput(completion, format === "multiple-choice" ? "choice" : "number");
  if (!parsed) return { rationale: answeredPart(completion).trim(), label: null };
  let label = parsed.label;
  if (label === null) {
    label = format === "multiple-choice" ? labelFromChoiceText(parsed.answerText, choices) : firstNumber(parsed.answerText);
  }
  return { rationale: parsed.rationale, label };
}

/** A gold answer in the same canonical form as parsed labels ("(b)" / "b" → "B"; "1,000.0" → "1000"). */
export function normaliseGold(answer: string, format: AnswerFormat): string | null {
  if (format === "math") return firstNumber(answer);
  if (format === "free") return freeAnswer(answer);
  const m = /^\(?([a-z])\)?\.?$/i.exec(answer.trim());
  return m ? m[1].toUpperCase() : null;
}

/** Whether the teacher's label matches the gold answer; null when there is no gold answer to compare with. */
export function agreesWithGold(label: string | null, gold: string | undefined, format: AnswerFormat): boolean | null {
  if (gold === undefined || gold.trim() === "") return null;
  const expected = normaliseGold(gold, format);
  if (label === null || expected === null) return false;
  if (format === "math") return Math.abs(Number(label) - Number(expected)) <= 1e-6 * Math.max(1, Math.abs(Number(expected)));
  if (format === "free") return normaliseGold(label, "free") === expected;
  return label === expected;
}
