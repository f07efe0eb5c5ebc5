/**
 * Where training batches come from. A source draws all its randomness from the trainer's RNG and can save and
 * restore its own position, so a resumed run sees exactly the batches an uninterrupted one would have.
 */
import { UserError } from "../errors.ts";
import type { Batch } from "../model/decoder.ts";
import type { Rng } from "../model/rng.ts";

export interface BatchSource {
  readonly B: number;
  readonly T: number;
  next(rng: Rng): Batch;
  state(): unknown;
  restore(state: unknown): void;
}

/** Plain language modelling: B random windows of T+1 tokens from one token stream, every position weighted 1. */
export class TokenStreamSource implements BatchSource {
  constructor(private readonly stream: Uint32Array, readonly B: number, readonly T: number) {
    if (stream.length < 2) throw new UserError("training data has fewer than 2 tokens");
  }

  next(rng: Rng): Batch {
    const { B, T, stream } = this;
    const tokens = new Uint32Array(B * T);
    const targets = new Uint32Array(B * T);
    const weights = new Float32Array(B * T);
    const span = Math.min(T, stream.length - 1);
    for (let b = 0; b < B; b++) {
      const start = rng.int(stream.length - span);
      for (let t = 0; t < span; t++) {
        tokens[b * T + t] = stream[start + t];
        targets[b * T + t] = stream[start + t + 1];
        weights[b * T + t] = 1;
      }
    }
    return { tokens, targets, weights, B, T };
  }

  state(): unknown {
    return null; // stateless: every draw comes from the RNG
  }

  restore(): void {}
}

/** One training sequence with per-token loss weights (token i predicts token i+1 with weight weights[i]). */
export interface Sequence {
  ids: number[];
  /** weights[i] weights the prediction of ids[i+1] from ids[..i]; length ids.length − 1. */
  weights: number[];
}

/**
 * Epochs over a fixed list of sequences in a seeded order, B per batch, each padded to T (padding weight 0).
 * Sequences longer than T+1 tokens are truncated at the end (their weights with them).
 */
export class SequenceSource implements BatchSource {
  private order: number[] = [];
  private cursor = 0;
  epoch = 0;

  constructor(private readonly sequences: Sequence[], readonly B: number, readonly T: number) {
    if (sequences.length === 0) throw new UserError("no training examples");
  }

  next(rng: Rng): Batch {
    const { B, T } = this;
    const tokens = new Uint32Array(B * T);
    const targets = new Uint32Array(B * T);
    const weights = new Float32Array(B * T);
    for (let b = 0; b < B; b++) {
      if (this.cursor >= this.order.length) this.shuffle(rng);
      const seq = this.sequences[this.order[this.cursor++]];
      const n = Math.min(seq.ids.length - 1, T);
      for (let t = 0; t < n; t++) {
        tokens[b * T + t] = seq.ids[t];
        targets[b * T + t] = seq.ids[t + 1];
        weights[b * T + t] = seq.weights[t];
      }
    }
    return { tokens, targets, weights, B, T };
  }

  private shuffle(rng: Rng): void {
    if (this.order.length) this.epoch++;
    this.order = this.sequences.map((_, i) => i);
    for (let i = this.order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [this.order[i], this.order[j]] = [this.order[j], this.order[i]];
    }
    this.cursor = 0;
  }

  /** Fractional epochs completed. */
  get progress(): number {
    return this.order.length ? this.epoch + this.cursor / this.order.length : 0;
  }

  state(): unknown {
    return { order: this.order, cursor: this.cursor, epoch: this.epoch };
  }

  restore(state: unknown): void {
    const s = state as { order: number[]; cursor: number; epoch: number };
    if (!Array.isArray(s?.order) || s.order.some((i) => !(i >= 0 && i < this.sequences.length))) {
      throw new UserError("checkpoint's data position does not match this dataset");
    }
    this.order = s.order;
    this.cursor = s.cursor;
    this.epoch = s.epoch;
  }
}
