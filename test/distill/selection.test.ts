import { describe, expect, test } from "bun:test";
import { UserError } from "../../src/errors.ts";
import {
  keyTokens,
  maskedTokens,
  parseSelection,
  randomTokens,
  selectTokens,
  shuffledText,
  shuffledTokens,
  type SelectionContext,
} from "../../src/distill/selection.ts";

// a rationale of 40 token ids with repeats, as real text has
const ids = Array.from({ length: 40 }, (_, i) => (i * 7919) % 23);
const context: SelectionContext = { vocabSize: 50, specialIds: new Set([0, 49]), maskId: 48 };
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);

describe("shuffled", () => {
  test("is a permutation of the full tokens, not the identity, and its seed reproduces it", () => {
    const a = shuffledTokens(ids, 5);
    expect(sorted(a)).toEqual(sorted(ids));
    expect(a).not.toEqual(ids);
    expect(shuffledTokens(ids, 5)).toEqual(a);
    expect(shuffledTokens(ids, 6)).not.toEqual(a);
  });
});

describe("random", () => {
  test("has the rationale's length, only ordinary vocabulary ids, and reproduces with its seed", () => {
    const a = randomTokens(ids.length, 50, context.specialIds, 1);
    expect(a.length).toBe(ids.length);
    expect(a.every((id) => Number.isInteger(id) && id >= 0 && id < 50 && id !== 0 && id !== 49)).toBe(true);
    expect(randomTokens(ids.length, 50, context.specialIds, 1)).toEqual(a);
    expect(randomTokens(ids.length, 50, context.specialIds, 2)).not.toEqual(a);
  });

  test("with all but one token special, it draws that one only", () => {
    const specials = new Set(Array.from({ length: 9 }, (_, i) => i + 1));
    expect(randomTokens(12, 10, specials, 3)).toEqual(new Array(12).fill(0));
  });

  test("draws roughly uniformly (every ordinary id appears over many draws)", () => {
    const seen = new Set(randomTokens(5000, 50, context.specialIds, 4));
    expect(seen.size).toBe(48);
  });
});

describe("key", () => {
  test("keeps exactly k tokens, the highest-scoring ones, in their original order", () => {
    const tokens = [10, 11, 12, 13, 14, 15];
    const scores = [0.1, 5, 0.2, 3, 4, 0.3];
    expect(keyTokens(tokens, scores, 3)).toEqual([11, 13, 14]);
    expect(keyTokens(tokens, scores, 0)).toEqual([]);
    expect(keyTokens(tokens, scores, 6)).toEqual(tokens);
  });

  test("ties go to the earlier token; the result is a subsequence of the rationale", () => {
    expect(keyTokens([7, 8, 9, 10], [1, 2, 1, 1], 2)).toEqual([7, 8]);
    const kept = keyTokens(ids, ids.map((id) => id % 5), 15);
    expect(kept.length).toBe(15);
    let at = 0;
    for (const id of kept) {
      const found = ids.indexOf(id, at);
      expect(found).toBeGreaterThanOrEqual(0);
      at = found + 1;
    }
  });

  test("k larger than the rationale keeps it whole (a sweep's k = all), a negative k is a user error", () => {
    expect(keyTokens([1, 2, 3], [1, 3, 2], 4)).toEqual([1, 2, 3]);
    expect(() => keyTokens([1, 2, 3], [1, 1, 1], -1)).toThrow(UserError);
  });
});

describe("masked", () => {
  test("replaces round(p·n) tokens with the mask and leaves the rest in place", () => {
    for (const p of [0, 0.15, 0.5, 0.77, 1]) {
      const out = maskedTokens(ids, p, 48, 9);
      const changed = out.filter((id, i) => id !== ids[i]);
      expect(changed.length).toBe(Math.round(p * ids.length));
      expect(changed.every((id) => id === 48)).toBe(true);
      expect(out.length).toBe(ids.length);
    }
  });

  test("its seed reproduces the positions; another seed moves them", () => {
    expect(maskedTokens(ids, 0.3, 48, 1)).toEqual(maskedTokens(ids, 0.3, 48, 1));
    expect(maskedTokens(ids, 0.3, 48, 1)).not.toEqual(maskedTokens(ids, 0.3, 48, 2));
  });

  test("p outside [0, 1] is a user error", () => {
    for (const p of [-0.1, 1.5, NaN]) expect(() => maskedTokens(ids, p, 48, 1)).toThrow(UserError);
  });
});

describe("selectTokens", () => {
  test("full is the rationale unchanged", () => {
    expect(selectTokens(ids, { kind: "full", seed: 0 }, context)).toEqual(ids);
  });

  test("key needs k; masked needs p", () => {
    expect(() => selectTokens(ids, { kind: "key", seed: 0 }, { ...context, scores: ids })).toThrow("needs k");
    expect(() => selectTokens(ids, { kind: "masked", seed: 0 }, context)).toThrow("needs p");
  });

  test("an unknown selection lists the valid ones", () => {
    expect(() => parseSelection("top")).toThrow('unknown selection "top" (valid: full, shuffled, random, key, masked, unk)');
  });

  test("unk replaces every token with the mask token (the paper's UNK experiment): length kept, content gone", () => {
    expect(selectTokens(ids, { kind: "unk", seed: 3 }, context)).toEqual(ids.map(() => 48));
  });
});

describe("shuffled words and sentences", () => {
  const text = "kip is tov. tov is red, big and old. that is all.";
  test("a word shuffle permutes whole words; a sentence shuffle whole sentences; both reproduce with the seed", () => {
    const words = shuffledText(text, "word", 1);
    expect(words.split(" ").sort()).toEqual(text.split(" ").sort());
    expect(words).not.toBe(text);
    expect(shuffledText(text, "word", 1)).toBe(words);
    const sentences = shuffledText(text, "sentence", 2);
    expect(sentences.split(/(?<=\.) /).sort()).toEqual(["kip is tov.", "that is all.", "tov is red, big and old."]);
    expect(new Set([0, 1, 2, 3, 4, 5].map((seed) => shuffledText(text, "sentence", seed))).size).toBeGreaterThan(1);
  });
});
