/**
 * Which of the rationale's TOKENS the student sees (Wadhwa et al. 2024 ablations): all of them in order ("full"),
 * the same tokens in a seeded random order ("shuffled"), as many random vocabulary tokens ("random", a control
 * that keeps length but no content), the k highest-scoring tokens in their original order ("key"), or the
 * rationale with a fraction p of its tokens replaced by a mask token ("masked"), or every token replaced by it
 * ("unk": the paper's UNK experiment — the rationale's length and position survive, its content does not).
 * "shuffled" permutes tokens, or — with `unit` "word" or "sentence" — whole words or sentences (src/distill/example.ts
 * shuffles those on the text before encoding).
 * Each is a small pure function of token ids and a seed.
 */
import { UserError } from "../errors.ts";
import { randomInt, seededPermutation, seededRandom } from "../data/random.ts";

export const SELECTIONS = ["full", "shuffled", "random", "key", "masked", "unk"] as const;
export type SelectionKind = (typeof SELECTIONS)[number];

export interface Selection {
  kind: SelectionKind;
  /** "key": how many tokens to keep. */
  k?: number;
  /** "masked": the fraction of tokens to mask, in [0, 1]. */
  p?: number;
  /** "shuffled": what is permuted (default token). */
  unit?: ShuffleUnit;
  seed: number;
}

export const SHUFFLE_UNITS = ["token", "word", "sentence"] as const;
export type ShuffleUnit = (typeof SHUFFLE_UNITS)[number];

/** The rationale text with its words (whitespace-separated) or sentences in a seeded random order. */
export function shuffledText(text: string, unit: Exclude<ShuffleUnit, "token">, seed: number): string {
  const pieces = unit === "word" ? text.trim().split(/\s+/) : text.trim().split(/(?<=[.!?])\s+/);
  return shuffledTokens(pieces, seed).join(" ");
}

/** What some selections need to know about the vocabulary and the item. */
export interface SelectionContext {
  vocabSize: number;
  /** Never drawn by "random" (end-of-text and the like). */
  specialIds: ReadonlySet<number>;
  /** The token "masked" writes. */
  maskId: number;
  /** "key": one attribution score per rationale token. */
  scores?: number[];
}

export function parseSelection(value: string): SelectionKind {
  if (!(SELECTIONS as readonly string[]).includes(value)) {
    throw new UserError(`unknown selection "${value}" (valid: ${SELECTIONS.join(", ")})`);
  }
  return value as SelectionKind;
}

export function shuffledTokens<T>(ids: readonly T[], seed: number): T[] {
  return seededPermutation(ids.length, seed).map((i) => ids[i]);
}

/** `count` tokens drawn uniformly from the vocabulary minus the special tokens. */
export function randomTokens(count: number, vocabSize: number, specialIds: ReadonlySet<number>, seed: number): number[] {
  const ordinary = vocabSize - [...specialIds].filter((id) => id >= 0 && id < vocabSize).length;
  if (ordinary <= 0) throw new UserError("the vocabulary has no ordinary tokens to draw from");
  const random = seededRandom(seed);
  const out: number[] = [];
  while (out.length < count) {
    const id = randomInt(random, vocabSize);
    if (!specialIds.has(id)) out.push(id);
  }
  return out;
}

/**
 * The k highest-scoring tokens, kept in their original order (ties go to the earlier token). A rationale shorter
 * than k is kept whole, so a sweep up to "all" (a k past every rationale's length) is the full rationale.
 */
export function keyTokens(ids: readonly number[], scores: readonly number[], k: number): number[] {
  if (scores.length !== ids.length) throw new Error(`${scores.length} scores for ${ids.length} tokens`);
  if (!Number.isInteger(k) || k < 0) throw new UserError(`k must be a non-negative integer, got ${k}`);
  const ranked = ids.map((_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  const kept = new Set(ranked.slice(0, k));
  return ids.filter((_, i) => kept.has(i));
}

/** The rationale with round(p·n) of its tokens, at seeded positions, replaced by `maskId`. */
export function maskedTokens(ids: readonly number[], p: number, maskId: number, seed: number): number[] {
  checkFraction(p);
  const masked = new Set(seededPermutation(ids.length, seed).slice(0, Math.round(p * ids.length)));
  return ids.map((id, i) => (masked.has(i) ? maskId : id));
}

export function checkFraction(p: number): number {
  if (!(p >= 0 && p <= 1)) throw new UserError(`p must be in [0, 1], got ${p}`);
  return p;
}

export function selectTokens(ids: readonly number[], selection: Selection, context: SelectionContext): number[] {
  switch (selection.kind) {
    case "full":
      return [...ids];
    case "shuffled":
      return shuffledTokens(ids, selection.seed);
    case "random":
      return randomTokens(ids.length, context.vocabSize, context.specialIds, selection.seed);
    case "key":
      if (selection.k === undefined) throw new UserError(`selection "key" needs k (--k)`);
      if (!context.scores) throw new Error(`selection "key" needs attribution scores`);
      return keyTokens(ids, context.scores, selection.k);
    case "masked":
      if (selection.p === undefined) throw new UserError(`selection "masked" needs p (--p)`);
      return maskedTokens(ids, selection.p, context.maskId, selection.seed);
    case "unk":
      return maskedTokens(ids, 1, context.maskId, selection.seed);
  }
}
