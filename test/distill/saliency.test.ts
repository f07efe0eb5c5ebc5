import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSplit } from "../../src/data/registry.ts";
import { buildExample } from "../../src/distill/example.ts";
import { attributionExample, cachedSaliency, gradientTimesInput, labelOnlyBatch, saliencyAttribution, saliencyCachePath } from "../../src/distill/saliency.ts";
import { loadCodec } from "../../src/distill/tokenizer.ts";
import { loadRationales } from "../../src/distill/rationales.ts";
import { readRunSettings, trainDistillation } from "../../src/distill/train.ts";
import { loadTokenizer } from "../../src/model/tokenizer.ts";
import { isolatedCache, KEYS, sharedGpu, syntheticDataset } from "../eval/synthetic.ts";

const root = mkdtempSync(join(tmpdir(), "saliency-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
// the question is the same for every item; only one rationale token ("…saw the sky") decides the answer
isolatedCache();
const data = syntheticDataset({ train: 32, test: 4, keyInRationaleOnly: true, labelNoise: true });
const quiet = { log: () => {} };

describe("gradient x input, CPU side", () => {
  test("the loss weights sit exactly on the predictions of label tokens", async () => {
    const items = await loadSplit(data.name, "train");
    const [rationale] = await loadRationales(data.name, items.slice(0, 1), data.rationales);
    const compact = (await loadCodec(data.name)).codec;
    const ex = attributionExample(items[0], rationale!, compact);
    const T = ex.ids.length - 1;
    const batch = labelOnlyBatch([ex], T);
    const weighted = [...batch.weights.keys()].filter((t) => batch.weights[t] === 1);
    expect(weighted).toEqual(Array.from({ length: ex.labelSpan.end - ex.labelSpan.start }, (_, i) => ex.labelSpan.start - 1 + i));
    expect(compact.decode(weighted.map((t) => batch.targets[t]))).toBe(` (${items[0].answer})`);
    // the rationale precedes the label, or the causal model could not depend on it
    expect(ex.spans.find((s) => s.kind === "rationale")!.end).toBeLessThan(ex.labelSpan.start);
  });

  test("|g·e| is summed over the embedding dimension per position", () => {
    const C = 2;
    const grad = Float32Array.from([1, 2, 3, -4, 0, 0]);
    const emb = Float32Array.from([1, 1, 1, 1, 5, 5]);
    expect(gradientTimesInput(grad, emb, 0, 3, C, 0, 3)).toEqual([3, 1, 0]);
  });
});

describe("saliency attribution", () => {
  test("a trained student's label depends on the key token: it outscores the filler tokens; scores are cached; key-1 selection keeps it", async () => {
    const { gpu, kernels } = await sharedGpu();
    // rationale weight 0: the attribution student learns only to read the label off the rationale. Padded batches:
    // on 32 examples length bucketing groups the 4 batches of an epoch by length, and the student this test was
    // tuned on (12 of 16 key-on-top) is the one trained on mixed batches (bucketed it reached 8 of 16)
    const attributionRun = await trainDistillation(
      { dataset: data.name, placement: "before", selection: { kind: "full" }, model: "scratch-tiny", epochs: 30, training: { alpha: 0, batchSize: 8, lr: 3e-3, batching: "padded" }, seed: 0, rationales: data.rationales },
      { outDir: join(root, "before"), db: ":memory:", gpu, kernels, ...quiet },
    );
    const items = (await loadSplit(data.name, "train", { excludeDev: true })).slice(0, 16);
    const rationales = await loadRationales(data.name, items, data.rationales);
    const request = { dataset: data.name, modelDir: attributionRun.modelDir, items: items.map((item, i) => ({ item, rationale: rationales[i]! })), gpu, kernels };
    const attribution = await saliencyAttribution(request);
    const codec = await loadTokenizer(attributionRun.modelDir);

    let keyOnTop = 0;
    const keyScores: number[] = [];
    const fillerScores: number[] = [];
    items.forEach((item, i) => {
      const ids = attributionExample(item, rationales[i]!, codec).rationaleIds;
      const scores = attribution.scores(item, ids);
      expect(scores.length).toBe(ids.length);
      const isKey = ids.map((id) => KEYS.includes(codec.decode([id]).trim()));
      expect(isKey.filter(Boolean).length).toBe(1);
      scores.forEach((s, t) => (isKey[t] ? keyScores : fillerScores).push(s));
      if (isKey[scores.indexOf(Math.max(...scores))]) keyOnTop++;
    });
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(keyOnTop).toBeGreaterThanOrEqual(12);
    expect(mean(keyScores)).toBeGreaterThan(2 * mean(fillerScores));

    // key-1 selection with these scores keeps exactly the key word
    const kept = items.map((item, i) => buildExample(item, rationales[i], { placement: "after", selection: { kind: "key", k: 1, seed: 0 }, attribution }, codec).rationaleTokens);
    expect(kept.filter(([token]) => KEYS.includes(token.trim())).length).toBe(keyOnTop);

    // cached per (dataset, model weights): a second call reads the file, not the GPU
    const path = saliencyCachePath(data.name, attributionRun.modelDir);
    expect(existsSync(path)).toBe(true);
    const cache = JSON.parse(readFileSync(path, "utf8"));
    cache[items[0].id].scores = cache[items[0].id].scores.map(() => 7);
    writeFileSync(path, JSON.stringify(cache));
    const again = await saliencyAttribution({ ...request, gpu: undefined, kernels: undefined });
    expect(again.scores(items[0], cache[items[0].id].ids).every((s) => s === 7)).toBe(true);

    // wired into training: --selection key --attribution saliency --attribution-model <run>
    const student = await trainDistillation(
      { dataset: data.name, placement: "after", selection: { kind: "key", k: 1, attribution: "saliency", attributionModel: attributionRun.runDir }, model: "scratch-micro", epochs: 1, training: { batchSize: 8 }, seed: 0, rationales: data.rationales },
      { outDir: join(root, "key"), db: ":memory:", gpu, kernels, ...quiet },
    );
    expect(readRunSettings(student.runDir)!.attribution).toEqual({ kind: "saliency", model: attributionRun.runDir });
  });

  test("a rationale tokenized differently from the cached ids is refused", () => {
    const attribution = cachedSaliency({ "x-1": { ids: [1, 2, 3], scores: [0.1, 0.2, 0.3] } }, "model");
    const item = { id: "x-1", dataset: "d", split: "train", index: 0, question: "q", answer: "A" };
    expect(attribution.scores(item, [1, 2, 3])).toEqual([0.1, 0.2, 0.3]);
    expect(() => attribution.scores(item, [1, 2])).toThrow(/tokenized differently by the student than by model/);
  });
});
