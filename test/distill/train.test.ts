import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { RunSpecInput } from "../../src/distill/run-spec.ts";
import { readRunSettings, trainDistillation } from "../../src/distill/train.ts";
import { openDatabase } from "../../src/store/db.ts";
import { RunStore } from "../../src/store/runs.ts";
import { readMetrics } from "../../src/train/metrics.ts";
import { isolatedCache, sharedGpu, syntheticDataset } from "../eval/synthetic.ts";
import { runCli } from "../helpers/cli.ts";

const root = mkdtempSync(join(tmpdir(), "distill-train-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
isolatedCache();
const data = syntheticDataset({ train: 32, test: 8 });
const quiet = { log: () => {} };

function spec(overrides: Record<string, unknown> = {}): RunSpecInput & { outDir: string } {
  return {
    dataset: data.name,
    placement: "after",
    selection: { kind: "full" },
    model: "scratch-micro",
    epochs: 4,
    training: { batchSize: 8, lr: 6e-3 },
    seed: 1,
    outDir: join(root, `run-${Math.random().toString(36).slice(2)}`),
    rationales: data.rationales,
    ...overrides,
  } as RunSpecInput & { outDir: string };
}

/** Trains spec s into its outDir. */
const train = ({ outDir, ...s }: RunSpecInput & { outDir: string }, options: Record<string, unknown> = {}) => trainDistillation(s, { outDir, ...quiet, ...options });

describe("trainDistillation", () => {
  test("trains a from-scratch student, the loss goes down, the run is registered done with run.json and an HF model folder", async () => {
    const db = openDatabase(join(root, "runs.sqlite"));
    const { gpu, kernels } = await sharedGpu();
    const s = spec({ placement: "after", selection: { kind: "shuffled" }, seed: 3, name: "after-shuffled" });
    const result = await train(s, { db, gpu, kernels });

    const metrics = readMetrics(join(s.outDir, "metrics.jsonl"));
    expect(metrics.length).toBe(result.steps);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(metrics.slice(-3).map((m) => m.loss))).toBeLessThan(0.7 * mean(metrics.slice(0, 3).map((m) => m.loss)));

    const run = new RunStore(db).get(result.runId)!;
    expect(run).toMatchObject({ name: "after-shuffled", status: "done", runDir: resolve(s.outDir), error: null });
    expect(run.finalMetrics).toMatchObject({ steps: result.steps, final_loss: metrics.at(-1)!.loss });

    const settings = readRunSettings(s.outDir)!;
    expect(settings).toMatchObject({ id: result.runId, dataset: data.name, placement: "after", selection: { kind: "shuffled", seed: 3 }, model: "scratch-micro" });
    // 32 train items minus the dev carve-out (10%)
    expect(settings.examples).toBe(32 - Math.round(32 * 0.1));
    expect(settings.steps).toBe(Math.ceil((4 * settings.examples) / 8));
    expect(settings.modelConfig.nPositions).toBeGreaterThanOrEqual(settings.seqLength + 1);
    expect(settings.batching).toBe("bucketed"); // the default: batches of similar length, each as long as its longest
    for (const file of ["config.json", "model.safetensors", "vocab.json", "merges.txt"]) expect(existsSync(join(s.outDir, "model", file))).toBe(true);
    expect(JSON.parse(readFileSync(join(s.outDir, "model", "config.json"), "utf8")).vocab_size).toBe(settings.modelConfig.vocabSize);
  });

  test("an interrupted run is marked failed with the reason and finishes with resume under the same id", async () => {
    const db = openDatabase(":memory:");
    const { gpu, kernels } = await sharedGpu();
    const s = spec({ epochs: 1, training: { batchSize: 8, lr: 6e-3, checkpointEvery: 1 } });
    const first = await train(s, { db, gpu, kernels, stopAfter: 2 });
    expect(first.steps).toBe(2);
    expect(new RunStore(db).get(first.runId)).toMatchObject({ status: "failed", error: expect.stringContaining("stopped after step 2") });
    const resumed = await train(s, { db, gpu, kernels, resume: true });
    expect(resumed.runId).toBe(first.runId);
    expect(resumed.steps).toBe(readRunSettings(s.outDir)!.steps);
    expect(new RunStore(db).get(first.runId)!.status).toBe("done");
    expect(readMetrics(join(s.outDir, "metrics.jsonl")).map((m) => m.step)).toEqual(Array.from({ length: resumed.steps }, (_, i) => i + 1));
  });

  describe("bad input is refused with one clear error before anything is trained or registered", () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ["unknown placement", { placement: "middle" }, /placement: placement must be one of: none, before, after/],
      ["unknown selection", { selection: { kind: "best" } }, /selection\.kind: selection must be one of: full, shuffled/],
      ["a selection for placement none", { placement: "none", selection: { kind: "shuffled" } }, /placement "none" has no rationale to select from/],
      ["p outside [0, 1]", { selection: { kind: "masked", p: 1.5 } }, /selection\.p: p must be in \[0, 1\]/],
      ["unknown dataset", { dataset: "no-such-data" }, /unknown dataset "no-such-data"/],
      ["negative alpha", { training: { alpha: -1 } }, /training\.alpha: alpha must be >= 0/],
      ["saliency without a model", { selection: { kind: "key", k: 2, attribution: "saliency" } }, /attribution "saliency" needs attributionModel/],
      ["saliency model that is no folder", { selection: { kind: "key", k: 2, attribution: "saliency", attributionModel: "/nonexistent" } }, /--attribution-model "\/nonexistent" is neither a finished run folder nor a model folder/],
      ["unknown model", { model: "enormous" }, /--model "enormous" is neither a model folder nor in the Hugging Face cache \(looked in .*models--enormous\/snapshots.*\); to train from scratch, name a size: .*scratch-micro/],
      ["a bare size is not a from-scratch name", { model: "micro" }, /--model "micro" is neither a model folder.*scratch-micro/],
    ];
    for (const [name, overrides, message] of cases) {
      test(name, async () => {
        const db = openDatabase(":memory:");
        await expect(train(spec(overrides), { db })).rejects.toThrow(message);
        expect(new RunStore(db).list()).toEqual([]);
      });
    }
  });

  test("the CLI trains a run into the database and evaluates it by id, with --json answers", () => {
    const dbPath = join(root, "cli.sqlite");
    const run = (args: string[]) => {
      const child = runCli(args, { COT_DISTILL_DATASETS: data.dir });
      if (child.code !== 0) throw new Error(child.stderr);
      return { out: JSON.parse(child.stdout), err: child.stderr };
    };
    const outDir = join(root, "cli-run");
    const trained = run(["train", "--dataset", data.name, "--placement", "none", "--selection", "full", "--model", "scratch-micro", "--epochs", "1", "--limit", "8", "--seed", "0", "--rationales", data.rationales, "--out", outDir, "--db", dbPath, "--json"]);
    expect(trained.out).toMatchObject({ run_dir: outDir, examples: 8, steps: 1 });
    expect(trained.err).toContain(`run ${trained.out.run_id} (cli-run)`); // progress on stderr
    const evaluated = run(["eval", "--run", trained.out.run_id, "--db", dbPath, "--split", "test", "--limit", "3", "--json"]);
    expect(evaluated.out).toMatchObject({ dataset: data.name, split: "test", n: 3, placement: "none", predictionsFile: join(outDir, "eval-test.jsonl") });
    expect(new RunStore(openDatabase(dbPath)).get(trained.out.run_id)).toMatchObject({ status: "done", finalMetrics: { test_n: 3 } });
  });

  test("the CLI prints bad input as one line and exits 1", () => {
    const child = runCli(["train", "--dataset", "cqa", "--placement", "after", "--selection", "masked", "--p", "2", "--model", "scratch-micro", "--epochs", "1", "--seed", "0", "--out", join(root, "cli")]);
    expect(child.code).toBe(1);
    const stderr = child.stderr.trim().split("\n");
    expect(stderr).toEqual(["cot-distill: invalid flags: --p: p must be in [0, 1]"]);
  });

  test("the flags are the run spec's fields (derived from one schema), and --spec FILE is the same spec", async () => {
    const { RUN_SPEC_FLAGS, runSpecFromFlags } = await import("../../src/distill/run-spec.ts");
    expect(RUN_SPEC_FLAGS.map((f) => f.flag)).toEqual(expect.arrayContaining(["dataset", "placement", "selection", "k", "p", "unit", "attribution-model", "batch-size", "lr", "max-seq-length", "dev-every", "patience", "untrained"]));
    const fromFlags = runSpecFromFlags({ dataset: "cqa", placement: "after", selection: "key", k: "5", "batch-size": "4", lr: "0.001" });
    expect(fromFlags).toEqual({ dataset: "cqa", model: "scratch-micro", placement: "after", selection: { kind: "key", k: 5 }, seed: 0, epochs: 1, training: { batchSize: 4, lr: 0.001 } });
    expect(() => runSpecFromFlags({ dataset: "cqa", placement: "after", lr: "fast" })).toThrow('--lr: Invalid type: Expected number but received "fast"');
    expect(runSpecFromFlags({ dataset: "cqa", placement: "after", batching: "padded" }).training).toEqual({ batching: "padded" });
    expect(() => runSpecFromFlags({ dataset: "cqa", placement: "after", batching: "sorted" })).toThrow("--batching: batching must be one of: bucketed, padded");
    const file = join(root, "spec.json");
    await Bun.write(file, JSON.stringify({ ...fromFlags, dataset: data.name, rationales: data.rationales, limit: 8, selection: { kind: "full" } }));
    const both = runCli(["train", "--spec", file, "--lr", "1", "--out", join(root, "spec-run")]);
    expect(both.code).toBe(1);
    expect(both.stderr.trim()).toBe("cot-distill: --spec holds every setting; do not also give --lr");
    const bad = join(root, "bad-spec.json");
    await Bun.write(bad, JSON.stringify({ dataset: "cqa", placement: "after", selection: { kind: "key" } }));
    expect(runCli(["train", "--spec", bad, "--out", join(root, "bad-run")]).stderr.trim()).toBe(`cot-distill: ${bad}: selection.k: Invalid key: Expected "k" but received undefined`);
  });
});
