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
 * How SequenceSource forms batches. "bucketed": each epoch's shuffled examples are sorted by length within pools of
 * POOL_BATCHES batches and cut into batches, which keep a random order (see SequenceSource.bucketed), so the rows of
 * a batch have similar lengths and the batch is only as long as its longest row (rounded up to LENGTH_STEP) —
 * padding costs almost nothing. An epoch's ragged last batch has fewer than B rows.
 * "padded": a plain shuffle, every batch padded to T (the longest example), as before bucketing existed.
 */
export const BATCHINGS = ["bucketed", "padded"] as const;
export type Batching = (typeof BATCHINGS)[number];
/** What distillation runs use unless told otherwise (run-spec's training.batching). */
export const DEFAULT_BATCHING: Batching = "bucketed";

/** Batches per length-sorted pool: large enough for tight length groups; batches still come in random order. */
export const POOL_BATCHES = 64;
/** Bucketed batches are a multiple of this many positions long, so a run sees few distinct shapes (bind groups). */
export const LENGTH_STEP = 8;

function shuffleInPlace<T>(list: T[], rng: Rng): T[] {
  for (let i = list.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

/**
 * Epochs over a fixed list of sequences in a seeded order, B per batch, padding weight 0 (see Batching for how
 * long a batch is). Sequences longer than T+1 tokens are truncated at the end (their weights with them).
 */
export class SequenceSource implements BatchSource {
  private order: number[] = [];
  private cursor = 0;
  epoch = 0;

  constructor(private readonly sequences: Sequence[], readonly B: number, readonly T: number, readonly batching: Batching = "padded") {
    if (sequences.length === 0) throw new UserError("no training examples");
  }

  /** Predictions a sequence makes within T. */
  private predictions(index: number): number {
    return Math.min(this.sequences[index].ids.length - 1, this.T);
  }

  next(rng: Rng): Batch {
    const bucketed = this.batching === "bucketed";
    if (this.cursor >= this.order.length) this.shuffle(rng);
    // a bucketed epoch's ragged last batch has fewer rows: borrowing from the next epoch would shift its batches
    const B = bucketed ? Math.min(this.B, this.order.length - this.cursor) : this.B;
    const rows: number[] = [];
    for (let b = 0; b < B; b++) {
      if (this.cursor >= this.order.length) this.shuffle(rng);
      rows.push(this.order[this.cursor++]);
    }
    const longest = Math.max(...rows.map((i) => this.predictions(i)));
    const T = bucketed ? Math.min(this.T, Math.ceil(longest / LENGTH_STEP) * LENGTH_STEP) : this.T;
    const tokens = new Uint32Array(B * T);
    const targets = new Uint32Array(B * T);
    const weights = new Float32Array(B * T);
    rows.forEach((index, b) => {
      const seq = this.sequences[index];
      const n = this.predictions(index);
      for (let t = 0; t < n; t++) {
        tokens[b * T + t] = seq.ids[t];
        targets[b * T + t] = seq.ids[t + 1];
        weights[b * T + t] = seq.weights[t];
      }
    });
    return { tokens, targets, weights, B, T };
  }

  private shuffle(rng: Rng): void {
    if (this.order.length) this.epoch++;
    const order = shuffleInPlace(this.sequences.map((_, i) => i), rng);
    this.order = this.batching === "bucketed" ? this.bucketed(order) : order;
    this.cursor = 0;
  }

  /**
   * The shuffled order regrouped: each pool sorted by length (stable: ties keep the shuffle), cut into B-row batches,
   * and the batches put in the order their earliest member had in the shuffle — random, and with no further draws,
   * so examples of one length batch exactly as "padded" batches them.
   */
  private bucketed(order: number[]): number[] {
    const { B } = this;
    const position = new Map(order.map((index, at) => [index, at]));
    const batches: number[][] = [];
    for (let start = 0; start < order.length; start += B * POOL_BATCHES) {
      const pool = order.slice(start, start + B * POOL_BATCHES).sort((a, b) => this.predictions(a) - this.predictions(b));
      for (let first = 0; first < pool.length; first += B) batches.push(pool.slice(first, first + B));
    }
    // a ragged last batch stays last, so every other batch starts at a multiple of B
    const ragged = batches.at(-1)!.length < B ? batches.pop()! : [];
    const earliest = (batch: number[]) => Math.min(...batch.map((i) => position.get(i)!));
    return [...batches.sort((a, b) => earliest(a) - earliest(b)).flat(), ...ragged];
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
