/**
 * Token + position embeddings, see shaders/embedding.wgsl. The wte gradient is made deterministic without atomics
 * by grouping a batch's positions by token id on the CPU (`groupByToken`) and giving each distinct token one
 * workgroup on the GPU. Both passes are split by vocabulary range so that wte / dwte are never bound above the
 * binding limit (planChunks, src/gpu/chunks.ts).
 */
import { bind, createStorage, upload } from "../buffers.ts";
import { grid1d } from "../workgroups.ts";
import { f32bits } from "../recorder.ts";
import type { Gpu } from "../device.ts";
import type { Binding } from "../recorder.ts";
import { assertU32, bindingLimit, planChunks, type Chunk } from "../chunks.ts";
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
  /** Distinct tokens (ascending) and positions of the last update (they size the dispatch). */
  distinct: Uint32Array = new Uint32Array(0);
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
    this.distinct = groups.tokens;
    this.batchSize = batch.length;
  }

  /** The buckets [first, first+count) whose tokens lie in the vocabulary range (a contiguous run: tokens ascend). */
  groupsIn(range: Chunk): Chunk {
    const first = lowerBound(this.distinct, range.first);
    return { first, count: lowerBound(this.distinct, range.first + range.count) - first };
  }
}

function lowerBound(sorted: Uint32Array, value: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Rows [first, first+count) of a [rows, C] f32 tensor binding. */
function rowSlice(b: Binding, C: number, range: Chunk): Binding {
  return { buffer: b.buffer, offset: (b.offset ?? 0) + range.first * C * 4, size: range.count * C * 4 };
}

function bindingBytes(b: Binding): number {
  return b.size ?? b.buffer.size - (b.offset ?? 0);
}

export async function createEmbeddingKernels(ctx: KernelContext): Promise<EmbeddingKernels> {
  const [forward, tokenGradients, positionGradients] = await Promise.all(
    ["forward", "tokenGradients", "positionGradients"].map((entry) => ctx.shaders.pipeline("embedding", entry, { WG })),
  );
  const limit = bindingLimit(ctx);
  /** Vocabulary ranges of the table `wte` ([V, C], V read from the binding's size), each bindable. */
  const ranges = (wte: Binding, C: number) => planChunks(bindingBytes(wte) / (4 * C), 4 * C, limit);
  return {
    forward(r, o) {
      assertU32(o.B * o.T * o.C, "embedding output elements");
      for (const range of ranges(o.wte, o.C)) {
        const wte = rowSlice(o.wte, o.C, range);
        // Without learned positions the wte binding stands in for wpe (never read: hasPositions = 0).
        const words = [o.B, o.T, o.C, 0, f32bits(o.scale ?? 1), o.wpe ? 1 : 0, range.first, range.count, 0];
        r.dispatch(forward, words, [o.out, o.tokens, wte, o.wpe ?? wte], grid1d(o.B * o.T * o.C, WG));
      }
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
      const groups = [bind(buckets.tokens), bind(buckets.offsets), bind(buckets.positions)];
      const params = (range: Chunk, tokens: Chunk) => [o.B, o.T, o.C, tokens.count, f32bits(o.scale ?? 1), o.dwpe ? 1 : 0, range.first, range.count, tokens.first];
      for (const range of ranges(o.dwte, o.C)) {
        const tokens = buckets.groupsIn(range);
        if (tokens.count === 0) continue;
        r.dispatch(tokenGradients, params(range, tokens), [rowSlice(o.dwte, o.C, range), o.dout, ...groups], grid1d(tokens.count, 1));
      }
      if (o.dwpe) r.dispatch(positionGradients, params({ first: 0, count: 0 }, { first: 0, count: 0 }), [o.dwpe, o.dout], grid1d(o.T * o.C, WG));
    },
  };
}
