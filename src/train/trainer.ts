/**
 * The training loop: gradient accumulation over micro-batches, global-norm clipping, AdamW, warm-up + cosine LR,
 * NaN/Inf detection before the optimizer touches the weights, metrics per step. One CPU↔GPU sync per
 * micro-batch (to read its losses) and one per step (gradient norm) — the rest stays on the GPU.
 */
import type { Gpu } from "../gpu/device.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { DecoderModel } from "../model/decoder.ts";
import { Rng } from "../model/rng.ts";
import type { BatchSource } from "./batches.ts";
import { learningRate, type LrSchedule } from "./schedule.ts";
import type { StepMetrics } from "./metrics.ts";

export interface OptimizerOptions {
  lr: number;
  warmupSteps: number;
  /** Final LR as a fraction of `lr` (cosine decay). */
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Global gradient-norm clip; 0 disables. */
  gradClip: number;
  /** Micro-batches per optimizer step. */
  gradAccum: number;
}

export const DEFAULT_OPTIMIZER: OptimizerOptions = {
  lr: 1e-3,
  warmupSteps: 0,
  minLrRatio: 0.1,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  gradClip: 1.0,
  gradAccum: 1,
};

export class TrainingDiverged extends Error {
  override name = "TrainingDiverged";
}

/** What the trainer must remember to resume exactly. */
export interface TrainerState {
  step: number;
  rng: [number, number, number, number];
  source: unknown;
}

export class Trainer {
  step = 0;
  rng: Rng;
  private readonly recorder: Recorder;
  private readonly startTime = performance.now();

  constructor(
    readonly gpu: Gpu,
    readonly model: DecoderModel,
    readonly source: BatchSource,
    readonly optimizer: OptimizerOptions,
    readonly totalSteps: number,
    seed: number,
  ) {
    this.rng = new Rng(seed);
    this.recorder = new Recorder(gpu);
  }

  get schedule(): LrSchedule {
    const o = this.optimizer;
    return { lr: o.lr, warmupSteps: o.warmupSteps, totalSteps: this.totalSteps, minRatio: o.minLrRatio };
  }

  state(): TrainerState {
    return { step: this.step, rng: this.rng.state(), source: this.source.state() };
  }

  restore(state: TrainerState): void {
    this.step = state.step;
    this.rng = Rng.fromState(state.rng);
    this.source.restore(state.source);
  }

  /** One optimizer step. Throws TrainingDiverged (weights untouched by this step) on a non-finite loss or gradient. */
  async trainStep(): Promise<StepMetrics> {
    const started = performance.now();
    const { model, recorder: r } = this;
    const batches = Array.from({ length: this.optimizer.gradAccum }, () => this.source.next(this.rng));
    let weightSum = 0;
    for (const b of batches) for (const w of b.weights) weightSum += w;
    if (weightSum === 0) throw new TrainingDiverged(`step ${this.step + 1}: every loss weight in the batch is 0`);

    model.zeroGradients(r);
    let lossSum = 0;
    for (const batch of batches) {
      model.setBatch(batch);
      // LoRA dropout: a fresh mask per micro-batch, drawn from the checkpointed generator so a resume repeats it
      if (model.lora && model.lora.layout.settings.dropout > 0) model.dropoutSeed = this.rng.nextUint32();
      model.forward(r, 1 / weightSum);
      model.backward(r);
      r.submit();
      for (const l of await model.readLosses()) lossSum += l;
    }
    model.recordGradNorm(r);
    r.submit();
    const gradNorm = Math.sqrt(await model.readNormSquared());
    const loss = lossSum / weightSum;
    const step = this.step + 1;
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      throw new TrainingDiverged(
        `step ${step}: ${!Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${gradNorm}`}; ` +
          "stopped before updating the weights (try a lower --lr or stronger --grad-clip)",
      );
    }
    const lr = learningRate(step, this.schedule);
    const o = this.optimizer;
    model.recordAdamW(r, { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step, maxNorm: o.gradClip });
    r.submit();
    this.step = step;
    const seconds = (performance.now() - started) / 1000;
    const tokens = batches.reduce((n, b) => n + b.B * b.T, 0);
    return {
      step,
      loss,
      lr,
      grad_norm: gradNorm,
      tokens_per_s: tokens / seconds,
      tokens: weightSum,
      elapsed_s: (performance.now() - this.startTime) / 1000,
    };
  }
}
