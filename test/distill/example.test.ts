import { describe, expect, test } from "bun:test";
import { palmRationales } from "../../src/data/palm.ts";
import { loadSplit } from "../../src/data/registry.ts";
import type { Item } from "../../src/data/types.ts";
import { documentFrequencies, idfOverlapAttribution } from "../../src/distill/attribution.ts";
import { buildExample, toSequence, type ExampleConfig } from "../../src/distill/example.ts";
import { DEFAULT_TEMPLATE, parsePlacement } from "../../src/distill/placement.ts";
import { UserError } from "../../src/errors.ts";
import { WordCodec } from "./word-codec.ts";

const items = (await loadSplit("cqa", "train")).slice(0, 40);
const rationales = (await palmRationales("cqa", "train")).slice(0, 40).map((p) => p!.rationale);
const codec = new WordCodec();
const item = items[0];
const rationale = rationales[0];
const full: ExampleConfig = { placement: "after", selection: { kind: "full", seed: 0 } };
const text = (ids: number[]) => codec.decode(ids);

describe("placement", () => {
  test("none: the target is the gold label and end-of-text; there is no rationale", () => {
    const ex = buildExample(item, rationale, { ...full, placement: "none" }, codec);
    expect(ex.target).toBe(" (D)<|endoftext|>");
    expect(ex.rationaleIds).toEqual([]);
    expect(ex.prompt).toBe(
      `Q: ${item.question}\n(A) park\n(B) coloring book\n(C) garden center\n(D) math problem\n(E) gravity\nA:`,
    );
  });

  test("after: label first, then the rationale; before: rationale then the answer phrase", () => {
    const after = buildExample(item, rationale, full, codec);
    expect(after.target).toBe(` (D) ${rationale}<|endoftext|>`);
    const before = buildExample(item, rationale, { ...full, placement: "before" }, codec);
    expect(before.target).toBe(` ${rationale} So the answer is (D).<|endoftext|>`);
    for (const ex of [after, before]) {
      expect(text(ex.ids.slice(ex.labelSpan.start, ex.labelSpan.end))).toBe(" (D)");
      expect(text(ex.ids)).toBe(ex.prompt + ex.target);
      expect(text(ex.ids.slice(0, ex.promptLength))).toBe(ex.prompt);
    }
    expect(before.labelSpan.start).toBeGreaterThan(after.labelSpan.start);
  });

  test("the template is configurable", () => {
    const template = { ...DEFAULT_TEMPLATE, prompt: "Question: {question}\nOptions: {choices}\nAnswer:", choice: "{label}={text}; ", label: "[{label}]", answerPrefix: "Thus", separator: " " };
    const ex = buildExample(item, rationale, { ...full, placement: "before", template }, codec);
    expect(ex.prompt).toStartWith(`Question: ${item.question}\nOptions: A=park; B=coloring book;`);
    expect(ex.target).toEndWith(" Thus [D].<|endoftext|>");
  });

  test("an unknown placement lists the valid ones", () => {
    expect(() => parsePlacement("middle")).toThrow('unknown placement "middle" (valid: none, before, after)');
  });

  test("a rationale is required unless the placement is none", () => {
    expect(() => buildExample(item, null, full, codec)).toThrow(UserError);
    expect(buildExample(item, null, { ...full, placement: "none" }, codec).target).toBe(" (D)<|endoftext|>");
  });
});

describe("loss weights", () => {
  test("line up with the tokens of each part: prompt 0, label 1, rationale α", () => {
    for (const placement of ["none", "before", "after"] as const) {
      const ex = buildExample(item, rationale, { ...full, placement, weights: { prompt: 0, label: 1, rationale: 0.25 } }, codec);
      expect(ex.weights.length).toBe(ex.ids.length);
      ex.weights.forEach((w, i) => {
        const span = ex.spans.find((s) => s.start <= i && i < s.end)!;
        const expected = { prompt: 0, label: 1, rationale: 0.25, format: 1, end: 1 }[span.kind];
        expect(w).toBe(expected);
      });
      // the rationale's weight sits exactly on the rationale's tokens
      const weighted = ex.ids.filter((_, i) => ex.weights[i] === 0.25);
      expect(weighted).toEqual(ex.rationaleIds);
      expect(ex.weights.slice(0, ex.promptLength).every((w) => w === 0)).toBe(true);
    }
  });

  test("the trainer's sequence weights each next-token prediction", () => {
    const ex = buildExample(item, rationale, full, codec);
    const seq = toSequence(ex);
    expect(seq.weights.length).toBe(seq.ids.length - 1);
    // predicting the first label token, from the last prompt token, is weighted 1; predicting prompt tokens, 0
    expect(seq.weights[ex.promptLength - 1]).toBe(1);
    expect(seq.weights[ex.promptLength - 2]).toBe(0);
  });

  test("negative weights are refused", () => {
    expect(() => buildExample(item, rationale, { ...full, weights: { prompt: 0, label: 1, rationale: -1 } }, codec)).toThrow(UserError);
  });
});

describe("selection inside examples", () => {
  const fullIds = (i: number) => buildExample(items[i], rationales[i], full, codec).rationaleIds;

  test("shuffled is a permutation of full's tokens; items get different orders; the seed reproduces", () => {
    const shuffled = (i: number, seed: number) =>
      buildExample(items[i], rationales[i], { ...full, selection: { kind: "shuffled", seed } }, codec).rationaleIds;
    for (const i of [0, 1, 2]) {
      expect([...shuffled(i, 1)].sort()).toEqual([...fullIds(i)].sort());
      expect(shuffled(i, 1)).toEqual(shuffled(i, 1));
      expect(shuffled(i, 1)).not.toEqual(shuffled(i, 2));
    }
  });

  test("random keeps the length and never draws end-of-text", () => {
    const ex = buildExample(item, rationale, { ...full, selection: { kind: "random", seed: 3 } }, codec);
    expect(ex.rationaleIds.length).toBe(fullIds(0).length);
    expect(ex.rationaleIds).not.toContain(codec.eotId);
  });

  test("masked writes '_' over round(p·n) tokens", () => {
    const ex = buildExample(item, rationale, { ...full, selection: { kind: "masked", p: 0.4, seed: 3 } }, codec);
    const n = fullIds(0).length;
    expect(ex.rationaleTokens.filter((t) => t === "_").length).toBe(Math.round(0.4 * n));
  });

  test("key keeps k tokens in order, preferring rare tokens that also occur in the problem", () => {
    const attribution = idfOverlapAttribution(documentFrequencies(rationales.map((r) => ` ${r}`), codec), codec);
    const ex = buildExample(item, rationale, { ...full, selection: { kind: "key", k: 3, seed: 0 }, attribution }, codec);
    expect(ex.rationaleIds.length).toBe(3);
    // "math problem" is the answer choice this rationale argues for
    expect(ex.rationaleTokens.join("")).toContain(" math");
    // a k past the rationale's length keeps it whole (a key-k sweep can end at the full rationale)
    const all = buildExample(item, rationale, { ...full, selection: { kind: "key", k: 10_000, seed: 0 }, attribution }, codec);
    expect(all.rationaleIds).toEqual(fullIds(0));
  });
});

test("numeric datasets build the same way", async () => {
  const svamp: Item = (await loadSplit("svamp", "train"))[0];
  const ex = buildExample(svamp, "84 / 2 = 42.", { ...full, placement: "before" }, codec);
  expect(ex.prompt).toBe(`Q: ${svamp.question}\nA:`);
  expect(ex.target).toBe(" 84 / 2 = 42. So the answer is (42).<|endoftext|>");
});

describe("with the project's byte-level BPE", async () => {
  const { trainTokenizer } = await import("../../src/model/tokenizer.ts");
  const bpe = trainTokenizer(items.map((it, i) => `${it.question} ${rationales[i]}`), { vocabSize: 700 });

  test("each part's tokens decode to that part's text and carry its weight", () => {
    for (const placement of ["before", "after"] as const) {
      const ex = buildExample(item, rationale, { ...full, placement, weights: { prompt: 0, label: 2, rationale: 0.5 } }, bpe);
      expect(bpe.decode(ex.ids)).toBe(ex.prompt + ex.target);
      expect(bpe.decode(ex.ids.slice(ex.labelSpan.start, ex.labelSpan.end))).toBe(" (D)");
      const rationaleSpan = ex.spans.find((s) => s.kind === "rationale")!;
      expect(bpe.decode(ex.ids.slice(rationaleSpan.start, rationaleSpan.end))).toBe(` ${rationale}`);
      expect(ex.weights.slice(rationaleSpan.start, rationaleSpan.end).every((w) => w === 0.5)).toBe(true);
      expect(ex.weights.slice(ex.labelSpan.start, ex.labelSpan.end).every((w) => w === 2)).toBe(true);
      expect(ex.ids.at(-1)).toBe(bpe.eotId!);
    }
  });

  test("masked uses the vocabulary's <|mask|> token; random never draws a special token", () => {
    const masked = buildExample(item, rationale, { ...full, selection: { kind: "masked", p: 1, seed: 0 } }, bpe);
    expect(new Set(masked.rationaleTokens)).toEqual(new Set(["<|mask|>"]));
    const random = buildExample(item, rationale, { ...full, selection: { kind: "random", seed: 0 } }, bpe);
    expect(random.rationaleIds.some((id) => bpe.specialIds.includes(id))).toBe(false);
  });
});
