/**
 * Which tokenizer an example is built with: a model folder's own (tokenizer.json, or GPT-2's vocab.json +
 * merges.txt), or — for students
 * trained from scratch — a compact byte-level BPE trained on the dataset's training text (prompts and PaLM
 * rationales), cached in .cache/tokenizers/<dataset>/ so every command of a run agrees on the ids.
 */
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { palmRationales } from "../data/palm.ts";
import { loadSplit } from "../data/registry.ts";
import { loadTokenizer, MERGES_FILE, saveTokenizer, trainTokenizer, VOCAB_FILE, type Tokenizer } from "../model/tokenizer.ts";
import { HFTokenizer, loadModelTokenizer, type ModelTokenizer } from "../model/hf-tokenizer.ts";
import { cachePath } from "./cache.ts";
import { promptText } from "./placement.ts";

export const COMPACT_VOCAB_SIZE = 2048;

export interface LoadedCodec {
  codec: ModelTokenizer;
  /** Names the vocabulary for caches that depend on ids (attribution): changes when the files change. */
  key: string;
  /** Where it came from, for humans. */
  source: string;
}

/** The texts a dataset's compact vocabulary is learned from: each training prompt with its rationale. */
async function trainingTexts(dataset: string): Promise<string[]> {
  const items = await loadSplit(dataset, "train");
  const rationales = await palmRationales(dataset, "train").catch(() => items.map(() => null));
  return items.map((item, i) => `${promptText(item)} ${rationales[i]?.rationale ?? ""} (${item.answer})`);
}

/** The dataset's compact BPE, trained once and then read from the cache. */
export async function datasetTokenizer(dataset: string, vocabSize = COMPACT_VOCAB_SIZE): Promise<{ tokenizer: Tokenizer; dir: string }> {
  const dir = cachePath("tokenizers", dataset, `bpe-${vocabSize}`);
  if (existsSync(join(dir, VOCAB_FILE)) && existsSync(join(dir, MERGES_FILE))) return { tokenizer: await loadTokenizer(dir), dir };
  const tokenizer = trainTokenizer(await trainingTexts(dataset), { vocabSize });
  // saved beside, then renamed into place: a concurrent reader sees no folder or a whole one
  const partial = `${dir}.${process.pid}.tmp`;
  await saveTokenizer(partial, tokenizer);
  try {
    renameSync(partial, dir);
  } catch {
    // another process finished first; its vocabulary is the same (training is deterministic)
  }
  return { tokenizer, dir };
}

function fileKey(dir: string, codec: ModelTokenizer): string {
  const files = codec instanceof HFTokenizer ? codec.files : [VOCAB_FILE, MERGES_FILE].map((f) => join(dir, f));
  const hash = Bun.hash(files.map((f) => readFileSync(f, "utf8")).join("\0"));
  return `bpe-${hash.toString(16)}`;
}

/** `dir` given: that folder's tokenizer; otherwise the dataset's compact BPE. */
export async function loadCodec(dataset: string, dir?: string): Promise<LoadedCodec> {
  if (dir !== undefined) {
    const codec = await loadModelTokenizer(dir);
    return { codec, key: fileKey(dir, codec), source: dir };
  }
  const compact = await datasetTokenizer(dataset);
  return { codec: compact.tokenizer, key: fileKey(compact.dir, compact.tokenizer), source: compact.dir };
}
