/**
 * The training loop: gradient accumulation over micro-batches, global-norm clipping, AdamW, warm-up + cosine LR,
 * metrics per step — without waiting on the GPU. A step is encoded and submitted whole (every micro-batch's forward
 * and backward, the gradient norm, AdamW); its loss sum and gradient norm stay on the GPU, where a guard kernel
 * (shaders/guard.wgsl) keeps AdamW from touching the weights when either is non-finite, and from then on (sticky).
 * The step's four status words are copied into one of a ring of mappable buffers and read back asynchronously while
 * the next step is encoded, so metrics arrive a step or so late and a divergence is reported a step late — with the
 * weights as they were before the bad step.
 */
import type { Gpu } from "../gpu/device.ts";
import { STATUS } from "../gpu/kernels/guard.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { DecoderModel } from "../model/decoder.ts";
import { Rng } from "../model/rng.ts";
import type { BatchSource } from "./batches.ts";
import { learningRate, type LrSchedule } from "./schedule.ts";
import type { StepMetrics } from "./metrics.ts";

/** Steps whose status may be in flight at once (the ring of read-back buffers). */
const IN_FLIGHT = 3;

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

/** A submitted step whose status has not been delivered yet. */
interface PendingStep {
  step: number;
  lr: number;
  /** Tokens processed (B·T over the micro-batches) and loss weight summed. */
  tokens: number;
  weightSum: number;
  submitted: number;
  staging: GPUBuffer;
  /** Settles when the status words are on the CPU (or the read-back failed). */
  arrival: Promise<void>;
  status?: Float32Array;
  arrived?: number;
  error?: unknown;
}

export class Trainer {
  /** Steps submitted (the step the weights are at once the GPU has caught up). */
  step = 0;
  rng: Rng;
  /** Called with each step's metrics as they arrive, in step order — before any TrainingDiverged is thrown. */
  onMetrics?: (m: StepMetrics) => void;
  /** The metrics of the latest step delivered. */
  lastMetrics: StepMetrics | undefined;
  private readonly recorder: Recorder;
  private readonly startTime = performance.now();
  private readonly free: GPUBuffer[] = [];
  private readonly pending: PendingStep[] = [];
  private lastArrival = 0;
  private failure: Error | undefined;

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
    model.resetStepStatus();
    for (let i = 0; i < IN_FLIGHT; i++) {
      this.free.push(gpu.device.createBuffer({ label: "step status read-back", size: STATUS.words * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }));
    }
  }

  get schedule(): LrSchedule {
    const o = this.optimizer;
    return { lr: o.lr, warmupSteps: o.warmupSteps, totalSteps: this.totalSteps, minRatio: o.minLrRatio };
  }

  /** The position after the steps submitted so far; `flush()` first so their weights are on the GPU and checked. */
  state(): TrainerState {
    return { step: this.step, rng: this.rng.state(), source: this.source.state() };
  }

  restore(state: TrainerState): void {
    this.step = state.step;
    this.rng = Rng.fromState(state.rng);
    this.source.restore(state.source);
  }

  /**
   * Encodes and submits one optimizer step without waiting for the GPU (unless IN_FLIGHT steps are still unread),
   * delivering the metrics of earlier steps that have arrived. Throws TrainingDiverged once a diverged step's status
   * arrives (the weights are those before that step: it and every step after it were skipped on the GPU).
   */
  async submitStep(): Promise<void> {
    this.deliver();
    if (this.pending.length >= IN_FLIGHT) {
      await this.pending[0].arrival;
      this.deliver();
    }
    const submitted = performance.now();
    const { model, recorder: r } = this;
    const batches = Array.from({ length: this.optimizer.gradAccum }, () => this.source.next(this.rng));
    let weightSum = 0;
    for (const b of batches) for (const w of b.weights) weightSum += w;
    const step = this.step + 1;
    if (weightSum === 0) {
      await this.flush();
      throw new TrainingDiverged(`step ${step}: every loss weight in the batch is 0`);
    }

    model.zeroGradients(r);
    for (const batch of batches) {
      model.setBatch(batch); // a queue write: ordered after the micro-batch submitted before it
      // LoRA dropout: a fresh mask per micro-batch, drawn from the checkpointed generator so a resume repeats it
      if (model.lora && model.lora.layout.settings.dropout > 0) model.dropoutSeed = this.rng.nextUint32();
      model.forward(r, 1 / weightSum);
      model.recordLossSum(r);
      model.backward(r);
      r.submit();
    }
    model.recordGradNorm(r);
    const lr = learningRate(step, this.schedule);
    const o = this.optimizer;
    model.recordAdamW(r, { lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, step, maxNorm: o.gradClip });
    const staging = this.free.pop()!;
    r.commandEncoder().copyBufferToBuffer(model.stepStatus!, 0, staging, 0, STATUS.words * 4);
    r.submit();
    const entry: PendingStep = { step, lr, tokens: batches.reduce((n, b) => n + b.B * b.T, 0), weightSum, submitted, staging, arrival: Promise.resolve() };
    entry.arrival = staging.mapAsync(GPUMapMode.READ).then(
      () => {
        entry.status = new Float32Array(staging.getMappedRange().slice(0));
        staging.unmap();
        entry.arrived = performance.now();
      },
      (err) => {
        entry.error = err;
      },
    );
    this.pending.push(entry);
    this.step = step;
    // one turn of the event loop: Dawn resolves the read-backs of steps the GPU has finished meanwhile
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.deliver();
  }

  /** Waits for every submitted step's status and delivers its metrics (throws TrainingDiverged as submitStep does). */
  async flush(): Promise<void> {
    this.deliver();
    while (this.pending.length) {
      await this.pending[0].arrival;
      this.deliver();
    }
  }

  /** One step, waited for: submitStep then flush; returns this step's metrics (also given to onMetrics). */
  async trainStep(): Promise<StepMetrics> {
    await this.submitStep();
    await this.flush();
    return this.lastMetrics!;
  }

  /** Turns the arrived statuses at the head of the queue into metrics, in step order. */
  private deliver(): void {
    if (this.failure) throw this.failure;
    while (this.pending.length && (this.pending[0].status || this.pending[0].error !== undefined)) {
      const p = this.pending.shift()!;
      if (p.error !== undefined) throw (this.failure = p.error as Error);
      this.free.push(p.staging);
      const status = p.status!;
      const loss = status[STATUS.lossSum] / p.weightSum;
      const gradNorm = Math.sqrt(status[STATUS.rawNormSquared]);
      if (status[STATUS.diverged] !== 0) {
        this.failure = new TrainingDiverged(
          `step ${p.step}: ${!Number.isFinite(loss) ? `loss is ${loss}` : `gradient norm is ${gradNorm}`}; ` +
            "stopped before updating the weights (try a lower --lr or stronger --grad-clip)",
        );
        throw this.failure;
      }
      const seconds = (p.arrived! - Math.max(p.submitted, this.lastArrival)) / 1000;
      this.lastArrival = p.arrived!;
      const m: StepMetrics = {
        step: p.step,
        loss,
        lr: p.lr,
        grad_norm: gradNorm,
        tokens_per_s: p.tokens / seconds,
        tokens: p.weightSum,
        elapsed_s: (p.arrived! - this.startTime) / 1000,
      };
      this.lastMetrics = m;
      this.onMetrics?.(m);
    }
  }
}
