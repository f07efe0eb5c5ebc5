/**
 * Gradient × input attribution of rationale tokens, the model-based scorer behind the "key" selection: a trained
 * student reads prompt + rationale + "So the answer is (x)." and each rationale token t scores
 * |(∂ log p(label) / ∂ e_t) · e_t|, summed over the embedding dimension, where e_t is the token's input embedding
 * (token + position) — one forward and one backward pass of the engine, with loss weight 1 on the label tokens only.
 *
 * Why the rationale goes BEFORE the label here even when the attribution model was trained with it after: the
 * model is causal, so a label that precedes the rationale cannot depend on it and every gradient would be exactly 0.
 * A student trained with placement "before" (classic CoT) is the natural attribution model; one trained "after"
 * still gives a usable signal when its prompt format matches.
 *
 * Scores are cached per (dataset, model weights) in .cache/attribution/, keyed by item id, together with the token
 * ids they belong to — the student must tokenize the rationale identically (use the attribution model's tokenizer).
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { Item } from "../data/types.ts";
import { UserError } from "../errors.ts";
import { acquireGpu, type Gpu } from "../gpu/device.ts";
import { createKernels, type Kernels } from "../gpu/kernels/index.ts";
import { Recorder } from "../gpu/recorder.ts";
import { paddedBatch } from "../eval/decode.ts";
import { type Batch, DecoderModel } from "../model/decoder.ts";
import { loadHFModel } from "../model/hf.ts";
import { weightFiles } from "../model/hf-weights.ts";
import { loadModelTokenizer } from "../model/hf-tokenizer.ts";
import { type Attribution, attributionCacheDir } from "./attribution.ts";
import type { TokenCodec } from "./codec.ts";
import { buildExample, type DistillExample } from "./example.ts";

export interface SaliencyRequest {
  dataset: string;
  /** The attribution model: a Hugging Face folder with its tokenizer files. */
  modelDir: string;
  items: Array<{ item: Item; rationale: string }>;
  batchSize?: number;
  gpu?: Gpu;
  kernels?: Kernels;
  log?: (line: string) => void;
}

/** Token ids of one item's rationale and one score per id. */
export interface TokenScores {
  ids: number[];
  scores: number[];
}

type ScoreCache = Record<string, TokenScores>;

/** The example whose label is read for attribution: rationale first, full, no loss anywhere but the label. */
export function attributionExample(item: Item, rationale: string, codec: TokenCodec): DistillExample {
  return buildExample(item, rationale, { placement: "before", selection: { kind: "full", seed: 0 }, endOfText: false }, codec);
}

/** Rows of examples padded to T; weight 1 exactly where a label token is predicted. */
export function labelOnlyBatch(examples: DistillExample[], T: number): Batch {
  const isLabel = (b: number, t: number) => t + 1 >= examples[b].labelSpan.start && t + 1 < examples[b].labelSpan.end;
  return paddedBatch(examples.map((ex) => ex.ids), T, isLabel);
}

/** |g·e| per position, for the positions [start, end) of row b of [B,T,C] arrays. */
export function gradientTimesInput(grad: Float32Array, emb: Float32Array, b: number, T: number, C: number, start: number, end: number): number[] {
  const out: number[] = [];
  for (let t = start; t < end; t++) {
    let dot = 0;
    const at = (b * T + t) * C;
    for (let c = 0; c < C; c++) dot += grad[at + c] * emb[at + c];
    out.push(Math.abs(dot));
  }
  return out;
}

/** Scores for a list of examples with a model already on the GPU (built with training: true). */
export async function scoreExamples(model: DecoderModel, examples: DistillExample[], batchSize: number): Promise<TokenScores[]> {
  const recorder = new Recorder(model.gpu);
  const C = model.config.nEmbd;
  const out: TokenScores[] = [];
  for (let first = 0; first < examples.length; first += batchSize) {
    const rows = examples.slice(first, first + batchSize);
    const T = Math.max(...rows.map((ex) => ex.ids.length - 1));
    model.setBatch(labelOnlyBatch(rows, T));
    model.zeroGradients(recorder); // parameter gradients are a by-product here; keep them from growing without end
    model.forward(recorder, 1);
    model.backward(recorder);
    recorder.submit();
    const [grad, emb] = [await model.inputEmbeddingGradient(), await model.inputEmbeddings()];
    rows.forEach((ex, b) => {
      const span = ex.spans.find((s) => s.kind === "rationale")!;
      out.push({ ids: ex.rationaleIds, scores: gradientTimesInput(grad, emb, b, T, C, span.start, span.end) });
    });
  }
  return out;
}

function modelKey(modelDir: string): string {
  // every weight file (shards too): any change to the weights changes the key
  const hash = createHash("sha256");
  for (const file of weightFiles(modelDir)) hash.update(readFileSync(file));
  return hash.digest("hex").slice(0, 16);
}

export function saliencyCachePath(dataset: string, modelDir: string): string {
  return join(attributionCacheDir(), `saliency-${dataset}-${modelKey(modelDir)}.json`);
}

async function readCache(path: string): Promise<ScoreCache> {
  const file = Bun.file(path);
  return (await file.exists()) ? ((await file.json()) as ScoreCache) : {};
}

async function writeCache(path: string, cache: ScoreCache): Promise<void> {
  mkdirSync(attributionCacheDir(), { recursive: true });
  // whole file then rename: a concurrent reader never sees half of it
  const partial = `${path}.${process.pid}.tmp`;
  await Bun.write(partial, JSON.stringify(cache));
  renameSync(partial, path);
}

/** Computes (or reads from the cache) the scores of every requested item, then serves them synchronously. */
export async function saliencyAttribution(request: SaliencyRequest): Promise<Attribution> {
  const { modelDir, dataset } = request;
  const path = saliencyCachePath(dataset, modelDir);
  const cache = await readCache(path);
  const missing = request.items.filter(({ item }) => !cache[item.id]);
  if (missing.length > 0) {
    request.log?.(`saliency: gradient x input for ${missing.length} items with ${modelDir}`);
    const codec = await loadModelTokenizer(modelDir);
    const loaded = await loadHFModel(modelDir);
    const examples = missing.map(({ item, rationale }) => attributionExample(item, rationale, codec));
    const tooLong = examples.find((ex) => ex.ids.length - 1 > loaded.config.nPositions);
    if (tooLong) {
      throw new UserError(`saliency: item ${tooLong.itemId} needs ${tooLong.ids.length} tokens, more than the attribution model's n_positions (${loaded.config.nPositions})`, 422);
    }
    const batchSize = Math.min(request.batchSize ?? 8, examples.length);
    const gpu = request.gpu ?? (await acquireGpu());
    try {
      const kernels = request.kernels ?? (await createKernels(gpu));
      const T = Math.max(...examples.map((ex) => ex.ids.length - 1));
      const model = new DecoderModel(gpu, kernels, loaded.config, { B: batchSize, T, training: true });
      try {
        model.setParameters(loaded.params);
        const scored = await scoreExamples(model, examples, batchSize);
        missing.forEach(({ item }, i) => (cache[item.id] = scored[i]));
      } finally {
        model.destroy();
      }
    } finally {
      if (!request.gpu) gpu.destroy();
    }
    await writeCache(path, cache);
  }
  return cachedSaliency(cache, modelDir);
}

export function cachedSaliency(cache: ScoreCache, modelDir: string): Attribution {
  return {
    name: `saliency(${modelDir})`,
    scores(item, rationaleIds) {
      const entry = cache[item.id];
      if (!entry) throw new Error(`saliency: no scores for item ${item.id}`);
      if (entry.ids.length !== rationaleIds.length || entry.ids.some((id, i) => id !== rationaleIds[i])) {
        throw new UserError(`saliency: item ${item.id} is tokenized differently by the student than by ${modelDir}; train the student with that model's tokenizer`, 422);
      }
      return entry.scores;
    },
  };
}
