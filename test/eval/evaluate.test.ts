import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunSpec, RunSpecInput } from "../../src/distill/run-spec.ts";
import { trainDistillation } from "../../src/distill/train.ts";
import { evaluate, predict, type Prediction } from "../../src/eval/index.ts";
import { openDatabase } from "../../src/store/db.ts";
import { RunStore } from "../../src/store/runs.ts";
import { isolatedCache, KEYS, LABELS, sharedGpu, syntheticDataset } from "./synthetic.ts";

const root = mkdtempSync(join(tmpdir(), "eval-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
// the answer is a function of one question word: "what color is the sky" → (B) blue
isolatedCache();
const data = syntheticDataset({ train: 48, test: 16 });
const db = openDatabase(join(root, "runs.sqlite"));

async function train(placement: RunSpec["placement"]) {
  const { gpu, kernels } = await sharedGpu();
  const spec: RunSpecInput = { dataset: data.name, placement, model: "scratch-micro", epochs: 20, training: { batchSize: 8, lr: 6e-3 }, seed: 0, rationales: data.rationales };
  return trainDistillation(spec, { outDir: join(root, placement), db, gpu, kernels, log: () => {} });
}

const readPredictions = (path: string): Prediction[] =>
  readFileSync(path, "utf8").trim().split("\n").map((line) => JSON.parse(line) as Prediction);

describe("evaluate", () => {
  test("placement after: a student that learned the rule answers with the label only, by generation and by rank", async () => {
    const { gpu, kernels } = await sharedGpu();
    const run = await train("after");
    const result = await evaluate(run.runDir, undefined, "test", { gpu, kernels, batchSize: 4 });
    expect(result).toMatchObject({ dataset: data.name, split: "test", n: 16, placement: "after" });
    expect(result.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(result.rankAccuracy!).toBeGreaterThanOrEqual(0.9);
    for (const p of result.predictions) {
      expect(p.generated.trim()).toMatch(/^\([A-D]\)$/); // no reasoning at test time
      expect(p.rationale).toBeNull();
      expect(Object.keys(p.choiceLogProbs!)).toEqual(LABELS);
    }

    // the files hold what was returned, and the accuracy is a recount of the predictions file
    const saved = readPredictions(result.predictionsFile!);
    expect(saved).toEqual(result.predictions);
    const recount = saved.filter((p) => p.predicted !== null && p.predicted.toUpperCase() === p.gold.toUpperCase()).length / saved.length;
    const rankRecount = saved.filter((p) => p.rankPredicted === p.gold).length / saved.length;
    const summary = JSON.parse(readFileSync(result.summaryFile!, "utf8"));
    expect(summary).toMatchObject({ n: 16, accuracy: recount, rankAccuracy: rankRecount, limit: null });

    // by run id through the database, with a limit; the accuracy lands in the run's metrics
    const limited = await evaluate(run.runId, undefined, "test", { gpu, kernels, db, limit: 4 });
    expect(limited.n).toBe(4);
    expect(limited.predictions).toEqual(result.predictions.slice(0, 4));
    expect(new RunStore(db).get(run.runId)!.finalMetrics).toMatchObject({ test_accuracy: limited.accuracy, test_n: 4 });

    // a question it never saw, choices as plain texts
    const answer = await predict(run.runDir, `what color is the ${KEYS[2]}`, ["red", "blue", "green", "black"], { gpu, kernels });
    expect(answer).toMatchObject({ label: "C", rankLabel: "C", rationale: null });

    // a bare model folder is decoded as "after" but needs the dataset named
    const bare = await evaluate(run.modelDir, data.name, "test", { gpu, kernels, limit: 4, write: false });
    expect(bare.predictions.map((p) => p.predicted)).toEqual(result.predictions.slice(0, 4).map((p) => p.predicted));
    await expect(evaluate(run.modelDir, undefined, "test", { gpu, kernels })).rejects.toThrow(/bare model folder: say which dataset/);
  });

  test("placement before: the student writes a rationale, then the answer phrase and a label", async () => {
    const { gpu, kernels } = await sharedGpu();
    const run = await train("before");
    const result = await evaluate(run.runDir, undefined, "test", { gpu, kernels, limit: 8 });
    for (const p of result.predictions) {
      expect(p.rationale!.length).toBeGreaterThan(0);
      expect(p.generated).toMatch(/^ .+ So the answer is \([A-D]\)$/);
      expect(p.predicted).toMatch(/^[A-D]$/);
    }
    const answer = await predict(run.runDir, `what color is the ${KEYS[0]}`, ["red", "blue", "green", "black"], { gpu, kernels });
    expect(answer.rationale!.length).toBeGreaterThan(0);
    expect(answer.label).toMatch(/^[A-D]$/);
  });

  test("errors: an unknown run, a bad limit", async () => {
    await expect(evaluate("no-such-run", data.name, "test", { db })).rejects.toThrow(/no run "no-such-run"/);
    await expect(evaluate(join(root, "after"), undefined, "test", { limit: 0 })).rejects.toThrow(/--limit must be a positive integer/);
  });
});
