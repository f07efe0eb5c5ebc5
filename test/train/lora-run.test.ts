/**
 * A LoRA run through runTraining: interrupted and resumed from its checkpoint (adapters and their AdamW moments,
 * dropout masks from the checkpointed generator) it follows the uninterrupted run exactly, and the checkpoint holds
 * the adapters only; resuming a full fine-tuning checkpoint as a LoRA run is refused.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireGpu } from "../../src/gpu/device.ts";
import { createKernels } from "../../src/gpu/kernels/index.ts";
import { gpt2Config } from "../../src/model/config.ts";
import { initParams } from "../../src/model/init.ts";
import { initLora, loraLayout } from "../../src/model/lora.ts";
import { paramLayout } from "../../src/model/params.ts";
import { TokenStreamSource } from "../../src/train/batches.ts";
import { listCheckpoints, loadCheckpoint } from "../../src/train/checkpoint.ts";
import { readMetrics } from "../../src/train/metrics.ts";
import { type RunSpec, runTraining } from "../../src/train/run.ts";
import { DEFAULT_OPTIMIZER } from "../../src/train/trainer.ts";

const gpu = await acquireGpu();
const kernels = await createKernels(gpu);
afterAll(() => gpu.destroy());

const config = gpt2Config({ nLayer: 2, nHead: 2, nEmbd: 32, vocabSize: 23, nPositions: 16, layerNormEps: 1e-5 });
const stream = Uint32Array.from({ length: 600 }, (_, i) => (i % 7 === 0 ? 22 : (i * 3) % 11));
const lora = loraLayout(config, { rank: 3, alpha: 6, dropout: 0.1, targets: ["c_attn", "c_fc"] });

function spec(outDir: string, over: Partial<RunSpec> = {}): RunSpec {
  return {
    outDir, config, initialParams: initParams(paramLayout(config), 3), source: new TokenStreamSource(stream, 4, 16), steps: 8,
    optimizer: { ...DEFAULT_OPTIMIZER, lr: 1e-2, warmupSteps: 1 }, seed: 5, checkpointEvery: 4, gpu, kernels,
    lora: { layout: lora, adapters: initLora(lora, 5) }, ...over,
  };
}
const tmp = () => mkdtempSync(join(tmpdir(), "cot-lora-train-"));

test("an interrupted LoRA run resumed from its checkpoint reproduces the uninterrupted run exactly", async () => {
  const straight = tmp();
  await runTraining(spec(straight));
  const interrupted = tmp();
  expect((await runTraining(spec(interrupted, { stopAfter: 3 }))).steps).toBe(3);
  const checkpoint = listCheckpoints(interrupted).at(-1)!;
  expect(existsSync(join(checkpoint, "adapter_model.safetensors"))).toBe(true);
  expect(existsSync(join(checkpoint, "model.safetensors"))).toBe(false);
  // fresh initial adapters: they must come from the checkpoint
  const resumed = await runTraining(spec(interrupted, { resume: true, lora: { layout: lora, adapters: initLora(lora, 77) } }));
  expect(resumed.resumedFrom).toBe(3);
  const curve = (dir: string) => readMetrics(join(dir, "metrics.jsonl")).map((m) => [m.step, m.loss, m.grad_norm]);
  expect(curve(interrupted)).toEqual(curve(straight));
  const a = await loadCheckpoint(listCheckpoints(straight).at(-1)!);
  const b = await loadCheckpoint(listCheckpoints(interrupted).at(-1)!);
  expect(b.lora!.adapters).toEqual(a.lora!.adapters);
  expect(b.m).toEqual(a.m);
  expect(a.m.length).toBe(lora.size);
});

test("a full fine-tuning checkpoint does not resume as a LoRA run", async () => {
  const dir = tmp();
  await runTraining(spec(dir, { lora: undefined, steps: 4 }));
  await expect(runTraining(spec(dir, { resume: true }))).rejects.toThrow("cannot resume: the checkpoint was not trained with LoRA adapters and this run is");
});
