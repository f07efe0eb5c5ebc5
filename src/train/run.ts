/**
 * A whole training run in a folder: metrics.jsonl, checkpoints/ (exact resume), and model/ — the final weights as a
 * Hugging Face folder with the tokenizer beside them. Shared by `train-lm` and the distillation `train` command.
 * A LoRA run (spec.lora) trains only its adapters: model/ is then the base with them merged (what evaluation and
 * serving load), and adapter/ the adapters alone in PEFT's layout.
 */
import { appendFileSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { UserError } from "../errors.ts";
import { acquireGpu, type Gpu } from "../gpu/device.ts";
import { createKernels, type Kernels } from "../gpu/kernels/index.ts";
import type { ModelConfig } from "../model/config.ts";
import { sameModel } from "../model/family.ts";
import { DecoderModel } from "../model/decoder.ts";
import { saveHFModel } from "../model/hf.ts";
import { assertTrainingFits } from "../model/memory.ts";
import { type LoraLayout, mergeLora, saveLoraAdapter } from "../model/lora.ts";
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
  /** Dev-split evaluation during training: the model saved is the best-scoring one, and training may stop early. */
  validation?: Validation;
  /** Train these LoRA adapters (their initial values) with the base (initialParams) frozen. */
  lora?: LoraRun;
  /** Activation checkpointing: keep each layer's input only and recompute its forward in backward. */
  checkpointing?: boolean;
}

export interface LoraRun {
  layout: LoraLayout;
  adapters: Float32Array;
  /** What adapter_config.json names as base_model_name_or_path (a hub id or the base folder). */
  baseModel?: string;
}

/** The run's PEFT adapter folder (LoRA runs), beside model/. */
export const ADAPTER_DIR = "adapter";
const BEST_ADAPTER_DIR = "best-adapter";

export interface Validation {
  /** Evaluate every this many steps (and at the last step). */
  every: number;
  /** Stop after this many evaluations in a row without a better score (default: never stop early). */
  patience?: number;
  /** Higher is better (e.g. dev accuracy). */
  score(params: Float32Array, step: number): Promise<number>;
}

/** One dev evaluation, a line of dev.jsonl in the run folder. */
export interface DevScore {
  step: number;
  score: number;
  best: boolean;
}

export const DEV_LOG = "dev.jsonl";
/** The best-scoring weights so far (a Hugging Face folder); copied to model/ at the end. */
export const BEST_DIR = "best";

export function readDevLog(outDir: string): DevScore[] {
  const path = join(outDir, DEV_LOG);
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as DevScore);
}

export interface TrainingResult {
  metrics: StepMetrics[];
  modelDir: string;
  steps: number;
  resumedFrom?: number;
  /** Dev evaluation stopped training before the planned steps. */
  stoppedEarly?: boolean;
  /** The dev evaluation whose weights were kept (with validation). */
  best?: DevScore;
  /** Training is over: all steps done, or stopped early (model/ holds the weights). */
  finished: boolean;
}

export async function runTraining(spec: RunSpec): Promise<TrainingResult> {
  const gpu = spec.gpu ?? (await acquireGpu());
  try {
    // before any buffer or file exists: a run that cannot fit is refused with by how much, not a device error mid-way
    assertTrainingFits(spec.config, { B: spec.source.B, T: spec.source.T, lora: spec.lora?.layout, checkpointing: spec.checkpointing }, gpu.device.limits);
  } catch (err) {
    if (!spec.gpu) gpu.destroy();
    throw err;
  }
  mkdirSync(spec.outDir, { recursive: true });
  const kernels = spec.kernels ?? (await createKernels(gpu));
  const lora = spec.lora;
  const model = new DecoderModel(gpu, kernels, spec.config, { B: spec.source.B, T: spec.source.T, training: true, lora: lora?.layout, checkpointing: spec.checkpointing });
  /** The trained model's full parameters: the base with the adapters merged in a LoRA run. */
  const trainedParams = async () => (lora ? mergeLora(spec.config, spec.initialParams, lora.layout, await model.getAdapters()) : model.getParameters());
  const saveAdapter = async (dir: string) => {
    if (lora) await saveLoraAdapter(dir, spec.config, lora.layout, await model.getAdapters(), { baseModel: lora.baseModel, dtype: spec.saveDtype });
  };
  const trainer = new Trainer(gpu, model, spec.source, spec.optimizer, spec.steps, spec.seed);
  const log = new MetricsLog(join(spec.outDir, "metrics.jsonl"));
  let resumedFrom: number | undefined;
  try {
    const from = spec.resume === true ? latestCheckpoint(spec.outDir) : spec.resume || undefined;
    if (from) {
      const c = await loadCheckpoint(from);
      checkResumable(spec, c.config, c.run);
      if (Boolean(lora) !== Boolean(c.lora)) throw new UserError(`cannot resume: the checkpoint was ${c.lora ? "" : "not "}trained with LoRA adapters and this run is${lora ? "" : " not"}`);
      if (lora && c.lora) {
        model.setParameters(spec.initialParams);
        model.setAdapters(c.lora.adapters);
      } else model.setParameters(c.params);
      model.setOptimizerState(c.m, c.v);
      trainer.restore(c.trainer);
      log.truncateAfter(c.trainer.step);
      resumedFrom = c.trainer.step;
    } else {
      model.setParameters(spec.initialParams);
      if (lora) model.setAdapters(lora.adapters);
      log.truncateAfter(0);
    }
    // dev evaluations of an interrupted run are kept up to its checkpoint; a later one is redone
    const devScores = readDevLog(spec.outDir).filter((d) => d.step <= trainer.step);
    writeFileSync(join(spec.outDir, DEV_LOG), devScores.map((d) => `${JSON.stringify(d)}\n`).join(""));
    let best = devScores.filter((d) => d.best).at(-1);
    let sinceBest = best ? devScores.filter((d) => d.step > best!.step).length : 0;
    let stoppedEarly = false;
    const validate = async (step: number) => {
      const v = spec.validation!;
      const params = await trainedParams();
      const score = await v.score(params, step);
      const better = best === undefined || score > best.score;
      const entry: DevScore = { step, score, best: better };
      appendFileSync(join(spec.outDir, DEV_LOG), `${JSON.stringify(entry)}\n`);
      if (better) {
        best = entry;
        sinceBest = 0;
        await saveHFModel(join(spec.outDir, BEST_DIR), { config: spec.config, params }, {}, { dtype: spec.saveDtype });
        await saveAdapter(join(spec.outDir, BEST_ADAPTER_DIR));
      } else sinceBest++;
      return v.patience !== undefined && sinceBest >= v.patience;
    };
    const metrics: StepMetrics[] = [];
    const checkpoint = async () =>
      saveCheckpoint(
        spec.outDir,
        {
          config: spec.config,
          params: lora ? new Float32Array(0) : await model.getParameters(),
          ...(lora ? { lora: { layout: lora.layout, adapters: await model.getAdapters() } } : {}),
          ...(await model.getOptimizerState()),
          trainer: trainer.state(),
          run: spec.run ?? {},
        },
        spec.extraFiles,
      );
    let stepsThisCall = 0;
    // metrics arrive a step or so after their step was submitted (trainer.ts); they are logged as they come
    trainer.onMetrics = (m) => {
      log.append(m);
      metrics.push(m);
      spec.onStep?.(m);
    };
    while (trainer.step < spec.steps) {
      await trainer.submitStep();
      stepsThisCall++;
      const step = trainer.step;
      const interrupted = spec.stopAfter !== undefined && stepsThisCall >= spec.stopAfter;
      const evaluate = spec.validation !== undefined && (step % spec.validation.every === 0 || step === spec.steps);
      const save = (spec.checkpointEvery > 0 && step % spec.checkpointEvery === 0) || step === spec.steps || interrupted;
      // weights are judged or saved only once their step is known to be sound (a divergence throws here)
      if (evaluate || save) await trainer.flush();
      if (evaluate) stoppedEarly = await validate(step);
      if (save || stoppedEarly) await checkpoint();
      if (interrupted || stoppedEarly) break;
    }
    await trainer.flush();
    const modelDir = join(spec.outDir, "model");
    const finished = trainer.step === spec.steps || stoppedEarly;
    if (finished) {
      const bestDir = join(spec.outDir, BEST_DIR);
      const adapterDir = join(spec.outDir, ADAPTER_DIR);
      if (spec.validation && best && existsSync(join(bestDir, "config.json"))) {
        rmSync(modelDir, { recursive: true, force: true });
        cpSync(bestDir, modelDir, { recursive: true });
        if (lora) {
          rmSync(adapterDir, { recursive: true, force: true });
          cpSync(join(spec.outDir, BEST_ADAPTER_DIR), adapterDir, { recursive: true });
        }
      } else {
        await saveHFModel(modelDir, { config: spec.config, params: await trainedParams() }, {}, { dtype: spec.saveDtype });
        await saveAdapter(adapterDir);
      }
      for (const file of spec.extraFiles ?? []) {
        copyFileSync(file, join(modelDir, basename(file)));
        if (lora) copyFileSync(file, join(adapterDir, basename(file)));
      }
    }
    return { metrics, modelDir, steps: trainer.step, resumedFrom, stoppedEarly, best, finished };
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
