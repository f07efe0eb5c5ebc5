/**
 * Tiny synthetic datasets whose answers a micro student can learn in a few dozen steps on the software adapter,
 * so decoding, rank classification and attribution can be checked against a known truth. Written as JSON-lines
 * files in a temp folder and registered under a fresh name.
 */
import { afterAll } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registerJsonl } from "../../src/data/registry.ts";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { createKernels, type Kernels } from "../../src/gpu/kernels/index.ts";

/** One GPU and compiled kernels for every test file of this process (bun runs test files in one process). */
const shared = globalThis as { __cotEvalGpu?: Promise<{ gpu: Gpu; kernels: Kernels }> };
export function sharedGpu(): Promise<{ gpu: Gpu; kernels: Kernels }> {
  shared.__cotEvalGpu ??= acquireGpu().then(async (gpu) => ({ gpu, kernels: await createKernels(gpu) }));
  return shared.__cotEvalGpu;
}

/**
 * Tokenizer and attribution caches in a temp folder for the calling test file (restored after it), so the
 * synthetic datasets leave nothing in the project's .cache/. CLI children inherit it through the environment.
 */
export function isolatedCache(): string {
  const previous = process.env.COT_DISTILL_CACHE;
  const dir = mkdtempSync(join(tmpdir(), "cot-cache-"));
  process.env.COT_DISTILL_CACHE = dir;
  afterAll(() => {
    if (previous === undefined) delete process.env.COT_DISTILL_CACHE;
    else process.env.COT_DISTILL_CACHE = previous;
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

export const LABELS = ["A", "B", "C", "D"];
const COLORS = ["red", "blue", "green", "black"];
/** The word that decides the answer, one per label. */
export const KEYS = ["apple", "sky", "grass", "coal"];

const FILLER_QUESTION = "we saw the thing. So the answer is which?";

export interface Synthetic {
  name: string;
  /** Holds the split files, and <name>/dataset.json: a datasets folder for COT_DISTILL_DATASETS. */
  dir: string;
  /** JSON-lines file of {id, rationale} for --rationales. */
  rationales: string;
}

let counter = 0;

/**
 * By default the question names the key word, so the label is a function of one question word ("what color is the
 * apple" → (A) red), and the rationale repeats the cue ("the apple is red"). With `keyInRationaleOnly` the question
 * is the same for every item and only the rationale, among constant filler words, carries the key ("we went out and
 * saw the sky over there today" → (B) sky): the label depends on that one rationale token.
 */
export function syntheticDataset(options: { train: number; test: number; keyInRationaleOnly?: boolean; labelNoise?: boolean }): Synthetic {
  const dir = mkdtempSync(join(tmpdir(), "cot-synthetic-"));
  const name = `synthetic-${process.pid}-${++counter}${options.keyInRationaleOnly ? "-key" : ""}`;
  // every word of a rationale also occurs in the prompts, so the compact BPE (learned from prompts) has it whole
  const choices = Object.fromEntries(LABELS.map((label, i) => [label, options.keyInRationaleOnly ? KEYS[i] : COLORS[i]]));
  const row = (split: string, i: number) => {
    const k = i % KEYS.length;
    const question = options.keyInRationaleOnly ? FILLER_QUESTION : `what color is the ${KEYS[k]}`;
    const rationale = options.keyInRationaleOnly ? `so we saw the ${KEYS[k]}` : `the ${KEYS[k]} is ${COLORS[k]}`;
    // label noise (every 5th item answers the next label) keeps a trained model from saturating at p = 1, where
    // every gradient of log p(label) vanishes and attribution would read noise
    const answer = options.labelNoise && i % 5 === 4 ? LABELS[(k + 1) % LABELS.length] : LABELS[k];
    return { id: `${split}-${i}`, question, choices, answer, rationale };
  };
  const write = (split: string, n: number) => {
    const rows = Array.from({ length: n }, (_, i) => row(split, i));
    writeFileSync(join(dir, `${split}.jsonl`), rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    return rows;
  };
  const rows = [...write("train", options.train), ...write("test", options.test)];
  const rationales = join(dir, "rationales.jsonl");
  writeFileSync(rationales, rows.map((r) => JSON.stringify({ id: r.id, rationale: r.rationale })).join("\n") + "\n");
  const spec = { splits: { train: "train.jsonl", test: "test.jsonl" }, fields: { id: "id", question: "question", choices: "choices", answer: "answer" } };
  // registered in this process, and described in <dir>/<name>/dataset.json for CLI children (COT_DISTILL_DATASETS=dir)
  registerJsonl(name, { ...spec, splits: { train: join(dir, "train.jsonl"), test: join(dir, "test.jsonl") } });
  mkdirSync(join(dir, name));
  for (const split of ["train", "test"]) copyFileSync(join(dir, `${split}.jsonl`), join(dir, name, `${split}.jsonl`));
  writeFileSync(join(dir, name, "dataset.json"), JSON.stringify(spec));
  return { name, dir, rationales };
}
