/**
 * A whole training run in a folder: metrics.jsonl, checkpoints/ (exact resume), and model/ — the final weights as a
 * Hugging Face folder with the tokenizer beside them. Shared by `train-lm` and the distillation `train` command.
 */
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { basename, join } from "node:path";
import { UserError } from "../errors.ts";
import { acquireGpu, type Gpu } from "../gpu/device.ts";
import { createKernels, type Kernels } from "../gpu/kernels/index.ts";
import type { ModelConfig } from "../model/config.ts";
import { sameModel } from "../model/family.ts";
import { DecoderModel } from "../model/decoder.ts";
import { saveHFModel } from "../model/hf.ts";
import { assertTrainingFits } from "../model/memory.ts";
import type { Dtype } from "../model/safetensors.ts";
import type { BatchSource } from "./batches.ts";
import { latestCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { MetricsLog, type StepMetrics } from "./metrics.ts";
import { type OptimizerOptions, Trainer } from "./trainer.ts";

export interface RunSpec {
  outDir: string;
  config: ModelConfig;
  initialParams: Float32Array;
  source: BatchSource;
  steps: number;
  optimizer: OptimizerOptions;
  seed: number;
  /** Checkpoint every N steps (0: only at the end). */
  checkpointEvery: number;
  /** Files copied next to the weights in checkpoints and the final model (tokenizer files). */
  extraFiles?: string[];
  /** Saved with each checkpoint; on resume, `resumeKey` entries must match (same data, same model…). */
  run?: Record<string, unknown>;
  /** Continue from the latest checkpoint in outDir (true) or from the given checkpoint folder. */
  resume?: boolean | string;
  onStep?: (m: StepMetrics) => void;
  gpu?: Gpu;
  kernels?: Kernels;
  /** The dtype the final model/ is written in (default F32; checkpoints for resuming stay F32, exact). */
  saveDtype?: Dtype;
  /** Stop (with a checkpoint) after this many steps of this invocation — for tests of interrupted runs. */
  stopAfter?: number;
}

export interface RunResult {
  metrics: StepMetrics[];
  modelDir: string;
  steps: number;
  resumedFrom?: number;
}

export async function runTraining(spec: RunSpec): Promise<RunResult> {
  const gpu = spec.gpu ?? (await acquireGpu());
  try {
    // before any buffer or file exists: a run that cannot fit is refused with by how much, not a device error mid-way
    assertTrainingFits(spec.config, spec.source, gpu.device.limits);
  } catch (err) {
    if (!spec.gpu) gpu.destroy();
    throw err;
  }
  mkdirSync(spec.outDir, { recursive: true });
  const kernels = spec.kernels ?? (await createKernels(gpu));
  const model = new DecoderModel(gpu, kernels, spec.config, { B: spec.source.B, T: spec.source.T, training: true });
  const trainer = new Trainer(gpu, model, spec.source, spec.optimizer, spec.steps, spec.seed);
  const log = new MetricsLog(join(spec.outDir, "metrics.jsonl"));
  let resumedFrom: number | undefined;
  try {
    const from = spec.resume === true ? latestCheckpoint(spec.outDir) : spec.resume || undefined;
    if (from) {
      const c = await loadCheckpoint(from);
      checkResumable(spec, c.config, c.run);
      model.setParameters(c.params);
      model.setOptimizerState(c.m, c.v);
      trainer.restore(c.trainer);
      log.truncateAfter(c.trainer.step);
      resumedFrom = c.trainer.step;
    } else {
      model.setParameters(spec.initialParams);
      log.truncateAfter(0);
    }
    const metrics: StepMetrics[] = [];
    const checkpoint = async () =>
      saveCheckpoint(
        spec.outDir,
        { config: spec.config, params: await model.getParameters(), ...(await model.getOptimizerState()), trainer: trainer.state(), run: spec.run ?? {} },
        spec.extraFiles,
      );
    let stepsThisCall = 0;
    while (trainer.step < spec.steps) {
      const m = await trainer.trainStep();
      log.append(m);
      metrics.push(m);
      spec.onStep?.(m);
      stepsThisCall++;
      const interrupted = spec.stopAfter !== undefined && stepsThisCall >= spec.stopAfter;
      if ((spec.checkpointEvery > 0 && m.step % spec.checkpointEvery === 0) || m.step === spec.steps || interrupted) {
        await checkpoint();
      }
      if (interrupted) break;
    }
    const modelDir = join(spec.outDir, "model");
    if (trainer.step === spec.steps) {
      await saveHFModel(modelDir, { config: spec.config, params: await model.getParameters() }, {}, { dtype: spec.saveDtype });
      for (const file of spec.extraFiles ?? []) copyFileSync(file, join(modelDir, basename(file)));
    }
    return { metrics, modelDir, steps: trainer.step, resumedFrom };
  } finally {
    model.destroy();
    if (!spec.gpu) gpu.destroy();
  }
}

function checkResumable(spec: RunSpec, config: ModelConfig, run: Record<string, unknown>): void {
  if (!sameModel(config, spec.config)) {
    throw new UserError("cannot resume: the checkpoint's model config differs from this run's");
  }
  for (const [key, value] of Object.entries(spec.run ?? {})) {
    if (key in run && JSON.stringify(run[key]) !== JSON.stringify(value)) {
      throw new UserError(`cannot resume: "${key}" differs from the checkpoint's (${JSON.stringify(run[key])} vs ${JSON.stringify(value)})`);
    }
  }
}

export function runExists(outDir: string): boolean {
  return existsSync(join(outDir, "metrics.jsonl"));
}
