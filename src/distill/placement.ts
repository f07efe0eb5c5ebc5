/**
 * Where the rationale goes in the student's target (Wadhwa et al. 2024): "none" trains on the label alone,
 * "before" is classic CoT (rationale, then "So the answer is (x)."), "after" puts the label first so the student
 * answers without reasoning at test time while the rationale still shapes training.
 *
 * A template turns an item into texts. Every target piece starts with its own leading space (GPT-2 attaches spaces
 * to the word after them), so encoding the pieces one by one gives the same tokens the trainer will see.
 */
import { UserError } from "../errors.ts";
import type { Item } from "../data/types.ts";

export const PLACEMENTS = ["none", "before", "after"] as const;
export type Placement = (typeof PLACEMENTS)[number];

export interface Template {
  /** What the student is given; fills {question} and {choices}. */
  prompt: string;
  /** One line per answer choice, concatenated into {choices}; fills {label} and {text}. */
  choice: string;
  /** How the label is written; fills {label}. */
  label: string;
  /** Before the label when it follows the rationale ("before" placement). */
  answerPrefix: string;
  /** After the label when it follows the rationale. */
  answerSuffix: string;
  /** Between the prompt and the target, and between target pieces. */
  separator: string;
}

/** PaLM's few-shot format (the shipped rationales were written in it), with upper-case labels as the data has. */
export const DEFAULT_TEMPLATE: Template = {
  prompt: "Q: {question}\n{choices}A:",
  choice: "({label}) {text}\n",
  label: "({label})",
  answerPrefix: "So the answer is",
  answerSuffix: ".",
  separator: " ",
};

export function parsePlacement(value: string): Placement {
  if (!(PLACEMENTS as readonly string[]).includes(value)) {
    throw new UserError(`unknown placement "${value}" (valid: ${PLACEMENTS.join(", ")})`);
  }
  return value as Placement;
}

function fill(format: string, values: Record<string, string>): string {
  return format.replace(/\{(\w+)\}/g, (whole, key: string) => values[key] ?? whole);
}

export function promptText(item: Item, template: Template = DEFAULT_TEMPLATE): string {
  const choices = (item.choices ?? []).map((c) => fill(template.choice, { label: c.label, text: c.text })).join("");
  return fill(template.prompt, { question: item.question, choices });
}

/** The kinds of target text; "format" is the glue (answer phrase) around a label that follows a rationale. */
export type PieceKind = "label" | "rationale" | "format";

export interface Piece {
  kind: PieceKind;
  text: string;
}

/** The target as pieces, in order, for a label and (unless placement is "none") a rationale already as text. */
export function targetPieces(placement: Placement, label: string, rationale: string, template: Template = DEFAULT_TEMPLATE): Piece[] {
  const sep = template.separator;
  const labelPiece: Piece = { kind: "label", text: sep + fill(template.label, { label }) };
  const rationalePiece: Piece = { kind: "rationale", text: sep + rationale };
  switch (placement) {
    case "none":
      return [labelPiece];
    case "after":
      return [labelPiece, rationalePiece];
    case "before":
      return [
        rationalePiece,
        { kind: "format" as const, text: sep + template.answerPrefix },
        labelPiece,
        { kind: "format" as const, text: template.answerSuffix },
      ].filter((piece) => piece.text.trim() !== "");
  }
}
