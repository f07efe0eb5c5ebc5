/**
 * Key-token attribution: how much each rationale token matters, for the "key" selection. Any scorer fits the one
 * interface — `scores(item, rationaleIds)` gives one number per token, higher = more important — so a trained
 * student's gradient×input attribution can replace the model-free baseline here without touching the builder.
 *
 * The baseline needs no model: a token scores its inverse document frequency over the dataset's training
 * rationales (rare tokens carry content, " the" does not), doubled when it also occurs in the question or the
 * answer choices (the rationale's link to the problem). Document frequencies are cached per dataset and
 * tokenizer in .cache/attribution/.
 */
import { mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { palmRationales } from "../data/palm.ts";
import { mixSeed, seededRandom } from "../data/random.ts";
import { loadSplit } from "../data/registry.ts";
import type { Item } from "../data/types.ts";
import { cachePath } from "./cache.ts";
import type { TokenCodec } from "./codec.ts";

export interface Attribution {
  readonly name: string;
  scores(item: Item, rationaleIds: readonly number[]): number[];
}

/** Document frequencies of token ids over a corpus of texts. */
export interface TokenFrequencies {
  documents: number;
  /** id → number of documents containing it */
  df: Record<number, number>;
}

export function documentFrequencies(texts: Iterable<string>, codec: TokenCodec): TokenFrequencies {
  const df: Record<number, number> = {};
  let documents = 0;
  for (const text of texts) {
    documents++;
    for (const id of new Set(codec.encode(text))) df[id] = (df[id] ?? 0) + 1;
  }
  return { documents, df };
}

/** Smoothed IDF: a token seen in no document still gets a finite, highest score. */
export function inverseDocumentFrequency(freq: TokenFrequencies, id: number): number {
  return Math.log((freq.documents + 1) / ((freq.df[id] ?? 0) + 1)) + 1;
}

/** The ids that the question and the answer choices are written with (with and without a leading space). */
function problemTokens(item: Item, codec: TokenCodec): Set<number> {
  const texts = [item.question, ...(item.choices ?? []).map((c) => c.text)];
  return new Set(texts.flatMap((t) => [...codec.encode(t), ...codec.encode(` ${t}`)]));
}

export function idfOverlapAttribution(freq: TokenFrequencies, codec: TokenCodec): Attribution {
  return {
    name: "idf-overlap",
    scores(item, rationaleIds) {
      const inProblem = problemTokens(item, codec);
      return rationaleIds.map((id) => inverseDocumentFrequency(freq, id) * (inProblem.has(id) ? 2 : 1));
    },
  };
}

/** The random-k control: a seeded random score per token, so "key" keeps k random rationale tokens in order. */
export function randomAttribution(seed: number): Attribution {
  return {
    name: "random",
    scores(item, rationaleIds) {
      const random = seededRandom(mixSeed(seed, item.index, 0x6b));
      return rationaleIds.map(() => random());
    },
  };
}

/** The training split's own rationales (a generated task's gold ones), else the shipped PaLM ones (null: none). */
export async function trainingRationales(dataset: string): Promise<Array<string | null>> {
  const items = await loadSplit(dataset, "train");
  if (items.some((item) => item.rationale !== undefined)) return items.map((item) => item.rationale ?? null);
  return (await palmRationales(dataset, "train")).map((p) => p?.rationale ?? null);
}

/** Where attribution statistics are cached (the saliency attribution keeps its scores there too). */
export function attributionCacheDir(): string {
  return cachePath("attribution");
}

/**
 * The baseline for a dataset's shipped PaLM rationales. `codecKey` names the tokenizer (its folder, a hash of its
 * files): the frequencies depend on it.
 */
export async function datasetIdfAttribution(dataset: string, codec: TokenCodec, codecKey: string): Promise<Attribution> {
  const dir = attributionCacheDir();
  const path = join(dir, `${dataset}-${codecKey.replace(/[^\w.-]+/g, "_")}.json`);
  const cached = Bun.file(path);
  let freq: TokenFrequencies;
  if (await cached.exists()) {
    freq = (await cached.json()) as TokenFrequencies;
  } else {
    const rationales = (await trainingRationales(dataset)).flatMap((r) => (r ? [` ${r}`] : []));
    freq = documentFrequencies(rationales, codec);
    mkdirSync(dir, { recursive: true });
    // written whole then renamed, so a concurrent reader never sees half a file
    const partial = `${path}.${process.pid}.tmp`;
    await Bun.write(partial, JSON.stringify(freq));
    renameSync(partial, path);
  }
  return idfOverlapAttribution(freq, codec);
}
