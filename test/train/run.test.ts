/**
 * Whole training runs on the software adapter: the loss goes down, an interrupted run resumed from its checkpoint
 * follows the uninterrupted loss curve exactly, a NaN stops training before any broken checkpoint is written, and a
 * corrupt checkpoint is refused without touching the older ones.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../../src/errors.ts";
import { acquireGpu } from "../../src/gpu/device.ts";
import { createKernels } from "../../src/gpu/kernels/index.ts";
import { gpt2Config } from "../../src/model/config.ts";
import { initParams } from "../../src/model/init.ts";
import { paramLayout } from "../../src/model/params.ts";
import { TokenStreamSource } from "../../src/train/batches.ts";
import { listCheckpoints, loadCheckpoint, verifyCheckpoint } from "../../src/train/checkpoint.ts";
import { readMetrics } from "../../src/train/metrics.ts";
import { type RunSpec, runTraining } from "../../src/train/run.ts";
import { DEFAULT_OPTIMIZER, TrainingDiverged } from "../../src/train/trainer.ts";

const gpu = await acquireGpu();
const kernels = await createKernels(gpu);
afterAll(() => gpu.destroy());

const config = gpt2Config({ nLayer: 2, nHead: 2, nEmbd: 32, vocabSize: 23, nPositions: 16, layerNormEps: 1e-5 });
// a learnable stream: a repeating pattern with some structure
const stream = Uint32Array.from({ length: 600 }, (_, i) => (i % 7 === 0 ? 22 : (i * 3) % 11));

function spec(outDir: string, over: Partial<RunSpec> = {}): RunSpec {
  return {
    outDir,
    config,
    initialParams: initParams(paramLayout(config), 3),
    source: new TokenStreamSource(stream, 4, 16),
    steps: 12,
    optimizer: { ...DEFAULT_OPTIMIZER, lr: 3e-3, warmupSteps: 2, gradAccum: 2 },
    seed: 5,
    checkpointEvery: 4,
    gpu,
    kernels,
    ...over,
  };
}

const tmp = () => mkdtempSync(join(tmpdir(), "cot-train-"));

test("a run trains (loss falls), logs metrics, and writes checkpoints and a final HF folder", async () => {
  const dir = tmp();
  const result = await runTraining(spec(dir));
  expect(result.steps).toBe(12);
  const metrics = readMetrics(join(dir, "metrics.jsonl"));
  expect(metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  expect(metrics[11].loss).toBeLessThan(metrics[0].loss * 0.8);
  for (const m of metrics) {
    expect(Number.isFinite(m.grad_norm) && m.grad_norm > 0).toBe(true);
    expect(m.tokens_per_s).toBeGreaterThan(0);
  }
  expect(metrics[0].lr).toBeCloseTo(1.5e-3, 10); // warm-up: step 1 of 2
  expect(listCheckpoints(dir).map((d) => d.split("/").at(-1))).toEqual(["step-000004", "step-000008", "step-000012"]);
  expect(JSON.parse(readFileSync(join(result.modelDir, "config.json"), "utf8")).n_layer).toBe(2);
});

test("an interrupted run resumed from its checkpoint reproduces the uninterrupted loss curve exactly", async () => {
  const straight = tmp();
  await runTraining(spec(straight));
  const interrupted = tmp();
  const first = await runTraining(spec(interrupted, { stopAfter: 5 })); // dies after step 5 (checkpoint at 5)
  expect(first.steps).toBe(5);
  // a fresh source and fresh initial params: everything must come from the checkpoint
  const resumed = await runTraining(spec(interrupted, { resume: true, initialParams: initParams(paramLayout(config), 99) }));
  expect(resumed.resumedFrom).toBe(5);
  const a = readMetrics(join(straight, "metrics.jsonl")).map((m) => [m.step, m.loss, m.grad_norm, m.lr]);
  const b = readMetrics(join(interrupted, "metrics.jsonl")).map((m) => [m.step, m.loss, m.grad_norm, m.lr]);
  expect(b).toEqual(a);
  const finalA = await loadCheckpoint(listCheckpoints(straight).at(-1)!);
  const finalB = await loadCheckpoint(listCheckpoints(interrupted).at(-1)!);
  expect(Buffer.from(finalB.params.buffer).equals(Buffer.from(finalA.params.buffer))).toBe(true);
});

test("a NaN stops training with a clear error before the weights change, and no checkpoint is written", async () => {
  const dir = tmp();
  const poisoned = initParams(paramLayout(config), 3);
  poisoned[paramLayout(config).layers[1]["fc.weight"]!.offset + 5] = Number.NaN;
  const run = runTraining(spec(dir, { initialParams: poisoned, checkpointEvery: 1 }));
  expect(run).rejects.toBeInstanceOf(TrainingDiverged);
  await expect(run).rejects.toThrow(/step 1: loss is NaN; stopped before updating the weights/);
  expect(listCheckpoints(dir)).toEqual([]);
});

test("a corrupt checkpoint is refused with a clear error and the older ones stay valid", async () => {
  const dir = tmp();
  await runTraining(spec(dir, { steps: 8 }));
  const [older, latest] = listCheckpoints(dir);
  const weights = join(latest, "model.safetensors");
  const bytes = readFileSync(weights);
  bytes[bytes.length - 3] ^= 0xff;
  writeFileSync(weights, bytes);
  const resume = runTraining(spec(dir, { steps: 12, resume: true }));
  expect(resume).rejects.toBeInstanceOf(UserError);
  await expect(resume).rejects.toThrow(/step-000008 is corrupt: model\.safetensors does not match its SHA-256/);
  expect(() => verifyCheckpoint(older)).not.toThrow();
  const resumedFromOlder = await runTraining(spec(dir, { steps: 12, resume: older }));
  expect(resumedFromOlder.resumedFrom).toBe(4);
  expect(resumedFromOlder.steps).toBe(12);
});
