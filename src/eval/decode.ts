/**
 * Forward-only use of a student: batched decoding (greedy or sampled, see sampling.ts) and sequence
 * log-probabilities.
 *
 * Generation keeps a key/value cache (DecoderModel.forwardCached): the prompts are prefilled once, then every pass
 * feeds one new token per generating row and reads back the logits of all of them at once. Rows are slots of the
 * cache: when a row finishes, the next waiting request is prefilled into its slot in the same pass as the other
 * rows' next tokens, so a batch never waits for its longest row. The uncached path (`cache: false`) reruns the
 * whole prefix per new token, as this file did before the cache; it is kept as the reference the cached path is
 * tested against and as the benchmark's baseline.
 *
 * Rows of different lengths share one batch, padded on the right: attention is causal, so a row's logits at its
 * own last position never see the padding after it.
 */
import type { Gpu } from "../gpu/device.ts";
import type { Kernels } from "../gpu/kernels/index.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { ModelConfig } from "../model/config.ts";
import { type Batch, DecoderModel, type KVCache } from "../model/decoder.ts";
import { GREEDY, RowStreams, type Sampling } from "./sampling.ts";

export { argmax } from "./sampling.ts";

export interface GenerationRequest {
  prompt: number[];
  maxNewTokens: number;
}

/** Decides after each new token whether a row is finished, from its generated ids so far. */
export type StopRule = (generated: number[], row: number) => boolean;

export interface GenerateOptions {
  /** Greedy by default. */
  sampling?: Sampling;
  /** Use the key/value cache (default true). */
  cache?: boolean;
  /** Context length this call may fill (default and at most: the decoder's maxLength), so a decoder bigger than
   * needed decodes exactly as one built for the call. */
  maxLength?: number;
}

/** Rows padded into one [B,T] batch; weights (and targets) only where `weighted(row, t)` says so. */
export function paddedBatch(rows: number[][], T: number, weighted?: (row: number, t: number) => boolean): Batch {
  const B = rows.length;
  const tokens = new Uint32Array(B * T);
  const targets = new Uint32Array(B * T);
  const weights = new Float32Array(B * T);
  rows.forEach((ids, b) => {
    for (let t = 0; t < Math.min(T, ids.length); t++) {
      tokens[b * T + t] = ids[t];
      if (weighted && t + 1 < ids.length && weighted(b, t)) {
        targets[b * T + t] = ids[t + 1];
        weights[b * T + t] = 1;
      }
    }
  });
  return { tokens, targets, weights, B, T };
}

export class Decoder {
  private readonly model: DecoderModel;
  private readonly recorder: Recorder;
  /** Made on the first cached generation, kept for the next. */
  private cache: KVCache | null = null;

  /** `maxRows` × `maxLength` is the largest batch it will run. */
  constructor(gpu: Gpu, kernels: Kernels, readonly config: ModelConfig, params: Float32Array, readonly maxRows: number, readonly maxLength: number) {
    this.model = new DecoderModel(gpu, kernels, config, { B: maxRows, T: maxLength, training: false });
    this.model.setParameters(params);
    this.recorder = new Recorder(gpu);
  }

  /**
   * Continues each prompt until `stop` says so, its budget is spent, or the context is full; `generated[i]` is
   * request i's new tokens. Greedy unless options.sampling says otherwise.
   */
  async generate(requests: GenerationRequest[], stop: StopRule, options: GenerateOptions = {}): Promise<number[][]> {
    const streams = new RowStreams(options.sampling ?? GREEDY);
    const maxLength = Math.min(options.maxLength ?? this.maxLength, this.maxLength);
    const generated = requests.map(() => [] as number[]);
    const finished = requests.map((r) => r.maxNewTokens <= 0 || r.prompt.length === 0 || r.prompt.length >= maxLength);
    const push = (i: number, logits: Float32Array) => {
      generated[i].push(streams.next(i, logits));
      const length = requests[i].prompt.length + generated[i].length;
      finished[i] = stop(generated[i], i) || generated[i].length >= requests[i].maxNewTokens || length >= maxLength;
    };
    if (options.cache === false) await this.generateUncached(requests, generated, finished, push);
    else await this.generateCached(requests, generated, finished, push);
    return generated;
  }

  /** Greedy decoding (the label-only and rationale generation of evaluation). */
  greedy(requests: GenerationRequest[], stop: StopRule): Promise<number[][]> {
    return this.generate(requests, stop);
  }

  private async generateCached(requests: GenerationRequest[], generated: number[][], finished: boolean[], push: (i: number, logits: Float32Array) => void): Promise<void> {
    this.cache ??= this.model.createCache(this.maxRows, this.maxLength);
    const cache = this.cache;
    const V = this.config.vocabSize;
    const waiting = requests.map((_, i) => i).filter((i) => !finished[i]);
    /** slot → the request decoded in it and how many of its tokens the cache holds. */
    const slots: Array<{ request: number; cached: number } | null> = Array.from({ length: this.maxRows }, () => null);
    for (;;) {
      slots.forEach((slot, s) => {
        if (slot === null && waiting.length) slots[s] = { request: waiting.shift()!, cached: 0 };
      });
      const live = slots.flatMap((slot, s) => (slot ? [{ slot, s }] : []));
      if (live.length === 0) return;
      const tokens: number[] = [], rows: number[] = [], positions: number[] = [], last: number[] = [];
      for (const { slot, s } of live) {
        const sequence = [...requests[slot.request].prompt, ...generated[slot.request]];
        for (let t = slot.cached; t < sequence.length; t++) {
          tokens.push(sequence[t]);
          rows.push(s);
          positions.push(t);
        }
        last.push(tokens.length - 1);
        slot.cached = sequence.length;
      }
      const pass = { tokens: Uint32Array.from(tokens), rows: Uint32Array.from(rows), positions: Uint32Array.from(positions), last: Uint32Array.from(last) };
      this.model.forwardCached(this.recorder, cache, pass);
      this.recorder.submit();
      const logits = await this.model.readCachedLogits(cache, live.length);
      live.forEach(({ slot, s }, b) => {
        push(slot.request, logits.subarray(b * V, (b + 1) * V));
        if (finished[slot.request]) slots[s] = null;
      });
    }
  }

  private async generateUncached(requests: GenerationRequest[], generated: number[][], finished: boolean[], push: (i: number, logits: Float32Array) => void): Promise<void> {
    for (let first = 0; first < requests.length; first += this.maxRows) {
      const chunk = requests.map((_, i) => i).slice(first, first + this.maxRows);
      for (;;) {
        const active = chunk.filter((i) => !finished[i]);
        if (active.length === 0) break;
        const rows = active.map((i) => [...requests[i].prompt, ...generated[i]]);
        const T = Math.max(...rows.map((ids) => ids.length));
        this.model.setBatch(paddedBatch(rows, T));
        this.model.forward(this.recorder, 0);
        this.recorder.submit();
        for (const [b, i] of active.entries()) push(i, await this.model.readLogitsAt(b, rows[b].length - 1));
      }
    }
  }

  /** Σ log p(ids[t]) over t ≥ from, for each row (ids: context followed by the scored continuation). */
  async logProbabilities(rows: Array<{ ids: number[]; from: number }>): Promise<number[]> {
    const out: number[] = [];
    for (let first = 0; first < rows.length; first += this.maxRows) {
      const chunk = rows.slice(first, first + this.maxRows);
      const T = Math.max(...chunk.map((r) => r.ids.length));
      // position t predicts ids[t+1]: weighted where that token belongs to the continuation
      this.model.setBatch(paddedBatch(chunk.map((r) => r.ids), T, (b, t) => t + 1 >= chunk[b].from));
      this.model.forward(this.recorder, 0);
      this.recorder.submit();
      const losses = await this.model.readLosses();
      chunk.forEach((_, b) => {
        let nll = 0;
        for (let t = 0; t < T; t++) nll += losses[b * T + t];
        out.push(-nll);
      });
    }
    return out;
  }

  destroy(): void {
    this.cache?.destroy();
    this.model.destroy();
  }
}
