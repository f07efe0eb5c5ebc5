import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { palmRationales } from "../../src/data/palm.ts";
import { loadSplit } from "../../src/data/registry.ts";
import {
  datasetIdfAttribution,
  documentFrequencies,
  idfOverlapAttribution,
  inverseDocumentFrequency,
} from "../../src/distill/attribution.ts";
import { trainTokenizer } from "../../src/model/tokenizer.ts";

const items = await loadSplit("svamp", "train");
const palm = await palmRationales("svamp", "train");
const tokenizer = trainTokenizer(
  palm.flatMap((p, i) => (p ? [`${items[i].question} ${p.rationale}`] : [])),
  { vocabSize: 600 },
);

describe("IDF-overlap baseline", () => {
  // words that are single tokens of this vocabulary
  const freq = documentFrequencies([" a apples has", " a more has", " a apples many"], tokenizer);

  test("a token in fewer documents scores higher; an unseen one highest", () => {
    const [a, cat, ran] = [" a", " apples", " many"].map((w) => tokenizer.encode(w)).map((ids) => {
      expect(ids.length).toBe(1);
      return ids[0];
    });
    expect(freq.documents).toBe(3);
    expect(freq.df[a]).toBe(3);
    expect(inverseDocumentFrequency(freq, a)).toBeLessThan(inverseDocumentFrequency(freq, cat));
    expect(inverseDocumentFrequency(freq, cat)).toBeLessThan(inverseDocumentFrequency(freq, ran));
    expect(inverseDocumentFrequency(freq, ran)).toBeLessThan(inverseDocumentFrequency(freq, tokenizer.encode(" total")[0]));
  });

  test("a token that also occurs in the question scores twice its IDF", () => {
    const attribution = idfOverlapAttribution(freq, tokenizer);
    const ids = tokenizer.encode(" a apples many");
    const item = { ...items[0], question: "How many apples?" };
    const scores = attribution.scores(item, ids);
    expect(scores.length).toBe(ids.length);
    ids.forEach((id, i) => {
      const inQuestion = [" apples", " many"].includes(tokenizer.decode([id]));
      expect(scores[i]).toBeCloseTo(inverseDocumentFrequency(freq, id) * (inQuestion ? 2 : 1), 12);
    });
  });
});

test("dataset frequencies are computed once per dataset and tokenizer, then read from .cache/attribution", async () => {
  const cache = mkdtempSync(join(tmpdir(), "cot-attr-"));
  const saved = process.env.COT_DISTILL_CACHE;
  process.env.COT_DISTILL_CACHE = cache;
  try {
    const first = await datasetIdfAttribution("svamp", tokenizer, "test-bpe-600");
    const files = readdirSync(join(cache, "attribution"));
    expect(files).toEqual(["svamp-test-bpe-600.json"]);
    const cached = await Bun.file(join(cache, "attribution", files[0])).json();
    expect(cached.documents).toBe(palm.filter(Boolean).length);
    const again = await datasetIdfAttribution("svamp", tokenizer, "test-bpe-600");
    const ids = tokenizer.encode(` ${palm[0]!.rationale}`);
    expect(again.scores(items[0], ids)).toEqual(first.scores(items[0], ids));
    expect(existsSync(join(cache, "attribution", "svamp-test-bpe-600.json"))).toBe(true);
  } finally {
    if (saved === undefined) delete process.env.COT_DISTILL_CACHE;
    else process.env.COT_DISTILL_CACHE = saved;
  }
});
