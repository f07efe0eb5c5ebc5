/**
 * Token + position embeddings, see shaders/embedding.wgsl. The wte gradient is made deterministic without atomics
 * by grouping a batch's positions by token id on the CPU (`groupByToken`) and giving each distinct token one
 * workgroup on the GPU.
 */
import { bind, createStorage, upload } from "../buffers.ts";
import { grid1d } from "../grid.ts";
import { f32bits } from "../recorder.ts";
import type { Gpu } from "../device.ts";
import type { EmbeddingBuckets, EmbeddingKernels, KernelContext } from "./index.ts";

const WG = 256;
/** Positions are packed below token ids in one float64 sort key (token·n + position < 2⁵³). */
const MAX_GROUPED_TOKENS = 1 << 21;

export interface TokenGroups {
  /** The distinct token ids, ascending. */
  tokens: Uint32Array;
  /** Group u is positions[offsets[u] … offsets[u+1]]; offsets has tokens.length + 1 entries. */
  offsets: Uint32Array;
  /** Every index into the batch, grouped by token, ascending within a group. */
  positions: Uint32Array;
}

/** Groups batch positions by token id: one numeric sort of token·n + position keys. */
export function groupByToken(batch: Uint32Array): TokenGroups {
  const n = batch.length;
  if (n > MAX_GROUPED_TOKENS) throw new Error(`cannot group ${n} tokens (at most ${MAX_GROUPED_TOKENS})`);
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) keys[i] = batch[i] * n + i;
  keys.sort();
  const positions = new Uint32Array(n);
  const tokens: number[] = [];
  const offsets: number[] = [];
  for (let k = 0; k < n; k++) {
    const position = keys[k] % n;
    const token = (keys[k] - position) / n;
    positions[k] = position;
    if (tokens.length === 0 || tokens[tokens.length - 1] !== token) {
      tokens.push(token);
      offsets.push(k);
    }
  }
  offsets.push(n);
  return { tokens: Uint32Array.from(tokens), offsets: Uint32Array.from(offsets), positions };
}

/** Groups uploaded into buffers sized once for `maxTokens` positions. */
class TokenBuckets implements EmbeddingBuckets {
  readonly tokens: GPUBuffer;
  readonly offsets: GPUBuffer;
  readonly positions: GPUBuffer;
  /** Distinct tokens and positions of the last update (they size the dispatch). */
  uniqueTokens = 0;
  batchSize = 0;

  constructor(private readonly gpu: Gpu, readonly maxTokens: number) {
    this.tokens = createStorage(gpu, "embedding bucket tokens", maxTokens * 4);
    this.offsets = createStorage(gpu, "embedding bucket offsets", (maxTokens + 1) * 4);
    this.positions = createStorage(gpu, "embedding bucket positions", maxTokens * 4);
  }

  // The upload goes on the queue at once: record and submit the backward that uses it before the next update.
  update(batch: Uint32Array): void {
    if (batch.length > this.maxTokens) throw new Error(`${batch.length} tokens exceed the buckets' ${this.maxTokens}`);
    const groups = groupByToken(batch);
    upload(this.gpu, bind(this.tokens), groups.tokens);
    upload(this.gpu, bind(this.offsets), groups.offsets);
    upload(this.gpu, bind(this.positions), groups.positions);
    this.uniqueTokens = groups.tokens.length;
    this.batchSize = batch.length;
  }
}

export async function createEmbeddingKernels(ctx: KernelContext): Promise<EmbeddingKernels> {
  const [forward, tokenGradients, positionGradients] = await Promise.all(
    ["forward", "tokenGradients", "positionGradients"].map((entry) => ctx.shaders.pipeline("embedding", entry, { WG })),
  );
  return {
    forward(r, o) {
      // Without learned positions the wte binding stands in for wpe (never read: hasPositions = 0).
      const words = [o.B, o.T, o.C, 0, f32bits(o.scale ?? 1), o.wpe ? 1 : 0];
      r.dispatch(forward, words, [o.out, o.tokens, o.wte, o.wpe ?? o.wte], grid1d(o.B * o.T * o.C, WG));
    },
    createBuckets(maxTokens) {
      return new TokenBuckets(ctx.gpu, maxTokens);
    },
    backward(r, o) {
      const buckets = o.buckets;
      if (!(buckets instanceof TokenBuckets)) throw new Error("embedding buckets must come from createBuckets()");
      if (buckets.batchSize !== o.B * o.T) {
        throw new Error(`buckets hold ${buckets.batchSize} tokens, the batch has B·T = ${o.B * o.T}: call update() first`);
      }
      const params = [o.B, o.T, o.C, buckets.uniqueTokens, f32bits(o.scale ?? 1), o.dwpe ? 1 : 0];
      const groups = [bind(buckets.tokens), bind(buckets.offsets), bind(buckets.positions)];
      r.dispatch(tokenGradients, params, [o.dwte, o.dout, ...groups], grid1d(buckets.uniqueTokens, 1));
      if (o.dwpe) r.dispatch(positionGradients, params, [o.dwpe, o.dout], grid1d(o.T * o.C, WG));
    },
  };
}
