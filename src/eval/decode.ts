/**
 * Forward-only use of a student: batched greedy decoding and sequence log-probabilities.
 *
 * Rows of different lengths share one batch, padded on the right: attention is causal, so a row's logits at its
 * own last position never see the padding after it. There is no key/value cache — every new token reruns the
 * batch over its current length, which is fine for the few tokens a label needs and acceptable for the short
 * rationales of small students.
 */
import type { Gpu } from "../gpu/device.ts";
import type { Kernels } from "../gpu/kernels/index.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { ModelConfig } from "../model/config.ts";
import { type Batch, DecoderModel } from "../model/decoder.ts";

export interface GenerationRequest {
  prompt: number[];
  maxNewTokens: number;
}

/** Decides after each new token whether a row is finished, from its generated ids so far. */
export type StopRule = (generated: number[], row: number) => boolean;

export function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
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

  /** `maxRows` × `maxLength` is the largest batch it will run. */
  constructor(gpu: Gpu, kernels: Kernels, readonly config: ModelConfig, params: Float32Array, readonly maxRows: number, readonly maxLength: number) {
    this.model = new DecoderModel(gpu, kernels, config, { B: maxRows, T: maxLength, training: false });
    this.model.setParameters(params);
    this.recorder = new Recorder(gpu);
  }

  /** Greedy continuation of each prompt until `stop` says so, its budget is spent, or the context is full. */
  async greedy(requests: GenerationRequest[], stop: StopRule): Promise<number[][]> {
    const generated = requests.map(() => [] as number[]);
    const finished = requests.map((r) => r.maxNewTokens <= 0 || r.prompt.length >= this.maxLength);
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
        for (const [b, i] of active.entries()) {
          generated[i].push(argmax(await this.model.readLogitsAt(b, rows[b].length - 1)));
          const length = requests[i].prompt.length + generated[i].length;
          finished[i] = stop(generated[i], i) || generated[i].length >= requests[i].maxNewTokens || length >= this.maxLength;
        }
      }
    }
    return generated;
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
    this.model.destroy();
  }
}
