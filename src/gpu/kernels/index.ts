/**
 * The TypeScript side of shaders/: one dispatcher module per kernel family (src/gpu/kernels/<family>.ts beside
 * shaders/<family>.wgsl), composed here. This file is the contract the model graph is written against.
 *
 * Conventions: tensors are row-major f32 (token ids and targets u32) passed as `Binding`s (a buffer, or a byte range
 * of one, offsets multiples of 256). "+=" outputs accumulate into what is there (parameter gradients, so gradient
 * accumulation and weight tying just work; the caller clears them at the start of a step); "=" outputs overwrite.
 * Kernels only record into the Recorder; nothing runs until `recorder.submit()`. Every kernel is deterministic:
 * no float atomics, fixed reduction order.
 */
import type { Gpu } from "../device.ts";
import type { Binding, Recorder } from "../recorder.ts";
import { ShaderLibrary } from "../shaders.ts";
import { createMatmulKernels } from "./matmul.ts";
import { createCrossEntropyKernels } from "./crossentropy.ts";
import { createAdamWKernels } from "./adamw.ts";
import { createResidualKernels } from "./residual.ts";
import { createLayerNormKernels } from "./layernorm.ts";
import { createGeluKernels } from "./gelu.ts";
import { createAttentionKernels } from "./attention.ts";
import { createEmbeddingKernels } from "./embedding.ts";
import { createRMSNormKernels } from "./rmsnorm.ts";
import { createRotaryKernels } from "./rotary.ts";
import { createGatedKernels } from "./gated.ts";
import { createSoftcapKernels } from "./softcap.ts";
import { createGuardKernels } from "./guard.ts";
import { createLoraKernels } from "./lora.ts";
import { createKVCacheKernels } from "./kvcache.ts";

export interface KernelContext {
  gpu: Gpu;
  shaders: ShaderLibrary;
  /** Bind at most this many bytes at once (default and ceiling: the adapter's maxStorageBufferBindingSize); tests
   *  lower it so the chunked paths run on small models. Read it through bindingLimit (src/gpu/chunks.ts). */
  maxBindingBytes?: number;
}

export interface KernelOptions {
  /** See KernelContext.maxBindingBytes. */
  maxBindingBytes?: number;
}

export interface MatmulKernels {
  /** Which kernel family the products run on ("tiled" on GPUs, "register" on software adapters; see matmul.ts). */
  variant: string;
  /**
   * out[M,N] (= or += with accumulate) op(a)·op(b) (+ bias[N]); a is [M,K] ([K,M] if transA), b is [K,N] ([N,K] if
   * transB). With `gelu`, also gelu[M,N] = GPT-2's tanh GELU of the final out (the MLP's fc → act in one pass).
   */
  matmul(r: Recorder, o: { out: Binding; a: Binding; b: Binding; bias?: Binding; gelu?: Binding; M: number; N: number; K: number; transA?: boolean; transB?: boolean; accumulate?: boolean }): void;
  /** dbias[N] += Σ_rows dout[M,N]. */
  biasBackward(r: Recorder, o: { dbias: Binding; dout: Binding; M: number; N: number }): void;
}

/** A compact list of row indices (u32, ascending, distinct) into the head's [N, C] input: `count` of them. */
export interface HeadRows {
  list: Binding;
  count: number;
}

/**
 * Buffers the fused head works in, allocated by its caller (DecoderModel; sized by headWorkspaceFloats so the memory
 * plan counts them): x [rowChunk, C] the gathered rows, logits [V, rowChunk] one chunk's logits (vocabulary-major),
 * dx [rowChunk, C] their input gradient (training only).
 */
export interface HeadWorkspace {
  rowChunk: number;
  x: Binding;
  logits: Binding;
  dx: Binding | null;
}

/** The LM head's operands: x [N, C] (the final norm's output), weight [V, C] (lm_head or the tied wte), bias [V]. */
export interface HeadOperands {
  ws: HeadWorkspace;
  rows: HeadRows;
  x: Binding;
  weight: Binding;
  bias?: Binding;
  V: number;
  C: number;
  /** Gemma 2's final soft-capping: logits = cap·tanh(raw/cap). */
  softcap?: number;
}

export interface CrossEntropyKernels {
  /**
   * Fused LM head + weighted cross-entropy over the listed rows i, z_i = softcap(W·x_i + bias):
   * losses[i] = weights[i]·(logsumexp(z_i) − z_i[targets[i]]), every other entry of losses set to 0. With
   * gradScale ≠ 0 and dx given, also the head's backward of weights[i]·gradScale·(softmax(z_i) − onehot):
   * dx (= overwrite, rows not listed get 0), dweight += … and dbias += … (each optional: leave out a frozen one).
   */
  head(r: Recorder, o: HeadOperands & { targets: Binding; weights: Binding; losses: Binding; gradScale: number; dx?: Binding; dweight?: Binding; dbias?: Binding }): void;
  /** The logits of listed rows [first, first+count) (count ≤ ws.rowChunk) into ws.logits, as [V, count]. */
  logits(r: Recorder, o: HeadOperands & { first: number; count: number }): void;
  /** Logits of `count` rows already compact, x [count, C]: out [V, count] = softcap(W·xᵀ + bias), vocabulary-major. */
  compactLogits(r: Recorder, o: { out: Binding; x: Binding; weight: Binding; bias?: Binding; count: number; V: number; C: number; softcap?: number }): void;
}

export interface AdamWKernels {
  /** out[0] = Σ grads[i]² over n floats (deterministic two-pass reduction). */
  gradNormSquared(r: Recorder, o: { out: Binding; grads: Binding; n: number }): void;
  /**
   * PyTorch AdamW on n floats, step ≥ 1, after clipping by global norm: g = grads·c where c = maxNorm/(‖g‖+1e-6)
   * when maxNorm > 0 and ‖g‖ > maxNorm, else 1, with ‖g‖² read from normSquared[0] on the GPU.
   */
  adamw(r: Recorder, o: { params: Binding; grads: Binding; m: Binding; v: Binding; n: number; lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; normSquared: Binding; maxNorm: number }): void;
}

/** The training step's status words on the GPU (shaders/guard.wgsl: ‖g‖² for AdamW, loss sum, diverged flag, raw ‖g‖²). */
export interface GuardKernels {
  /** status[1] += Σ terms[0…n) (deterministic). */
  addSum(r: Recorder, o: { status: Binding; terms: Binding; n: number }): void;
  /** After the gradient norm: a non-finite loss sum or norm, or an earlier divergence, sets the sticky flag and makes AdamW skip. */
  check(r: Recorder, o: { status: Binding }): void;
}

export interface ResidualKernels {
  /** out = a + b. */
  add(r: Recorder, o: { out: Binding; a: Binding; b: Binding; n: number }): void;
  /** dst += src. */
  accumulate(r: Recorder, o: { dst: Binding; src: Binding; n: number }): void;
}

export interface LayerNormKernels {
  /** Per row of inp[N,C]: out = (x−mean)·rstd·weight + bias; saves mean[N], rstd[N]. */
  forward(r: Recorder, o: { out: Binding; mean: Binding; rstd: Binding; inp: Binding; weight: Binding; bias: Binding; N: number; C: number; eps?: number }): void;
  /** dinp += …, dweight += …, dbias += … */
  backward(r: Recorder, o: { dinp: Binding; dweight: Binding; dbias: Binding; dout: Binding; inp: Binding; weight: Binding; mean: Binding; rstd: Binding; N: number; C: number }): void;
}

export interface GeluKernels {
  /** GPT-2's tanh approximation: out = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
  forward(r: Recorder, o: { out: Binding; inp: Binding; n: number }): void;
  /** dinp = dout·gelu'(inp). */
  backward(r: Recorder, o: { dinp: Binding; inp: Binding; dout: Binding; n: number }): void;
}

/**
 * A tensor of per-token rows read through a view: token n's data starts at n·stride + offset (floats), so q, k and
 * v can be read in place from a fused projection, and per-head rows (head h at + h·width) need no permute.
 */
export interface TokenView {
  binding: Binding;
  stride: number;
  offset: number;
}

/** A dense [tokens, width] tensor as a view. */
export function denseView(binding: Binding, width: number): TokenView {
  return { binding, stride: width, offset: 0 };
}

export interface AttentionShape {
  B: number;
  T: number;
  /** Query heads, key/value heads (NH a multiple of KVH), head size. */
  NH: number;
  KVH: number;
  hs: number;
}

export interface AttentionKernels {
  /**
   * Causal attention, flash-style (no T×T buffer): query head h with key/value head h/(NH/KVH), scores
   * scale·q·kᵀ (scale defaults to 1/√hs), soft-capped to softcap·tanh(s/softcap) when softcap is set (Gemma 2),
   * softmax over keys ≤ i. out[B,T,NH·hs] (dense) = softmax·v; stats[B,NH,T,2] = each row's score max and 1/Σexp(s −
   * max), from which the backward pass recomputes the probabilities. hs ≤ 256 (MAX_HEAD_SIZE in attention.ts).
   */
  forward(r: Recorder, o: AttentionShape & { out: Binding; stats: Binding; q: TokenView; k: TokenView; v: TokenView; scale?: number; softcap?: number }): void;
  /**
   * dq, dk, dv (= overwrite, through views; dk and dv are views of one binding or of different buffers) from dout
   * (dense [B,T,NH·hs]), q, k, v and the forward's stats; delta is [B,NH,T] scratch (Σ_j p·dout·v per row).
   */
  backward(r: Recorder, o: AttentionShape & { dq: TokenView; dk: TokenView; dv: TokenView; dout: Binding; stats: Binding; delta: Binding; q: TokenView; k: TokenView; v: TokenView; scale?: number; softcap?: number }): void;
}

export interface RMSNormKernels {
  /**
   * RMSNorm of N·H rows of C floats (H rows per token, at + h·C in the views): out = x·rstd·(w + gainOffset),
   * saving rstd[N·H].
   */
  forward(r: Recorder, o: { out: TokenView; rstd: Binding; inp: TokenView; weight: Binding; N: number; C: number; H?: number; eps: number; gainOffset: number }): void;
  /** dinp (+= with accumulate, the default; else =) through inp's view geometry, dout through out's; dweight +=. */
  backward(r: Recorder, o: { dinp: Binding; dweight: Binding; dout: TokenView; inp: TokenView; weight: Binding; rstd: Binding; N: number; C: number; H?: number; gainOffset: number; accumulate?: boolean }): void;
}

export interface RotaryKernels {
  /**
   * Rotate-half rotary embedding of the first rotaryDim dims of each of H heads per token (the rest copied), token n
   * at position n % T — or at positions[n] (u32 per token, for incremental decoding) —, cos/sin from `table`
   * (rotaryTable): out = rot(inp), overwriting.
   */
  forward(r: Recorder, o: { out: TokenView; inp: TokenView; table: Binding; N: number; T: number; H: number; headDim: number; rotaryDim: number; positions?: Binding }): void;
  /** The transposed rotation: out = dinp, inp = dout. */
  backward(r: Recorder, o: { out: TokenView; inp: TokenView; table: Binding; N: number; T: number; H: number; headDim: number; rotaryDim: number }): void;
}

export interface SoftcapKernels {
  /** values[0…n) = cap·tanh(values/cap), in place. */
  forward(r: Recorder, o: { values: Binding; n: number; cap: number }): void;
  /** grads *= 1 − (capped/cap)², where capped holds the forward's results. */
  backward(r: Recorder, o: { grads: Binding; capped: Binding; n: number; cap: number }): void;
}

export interface GatedKernels {
  /** inp[N,2I] = gate|up; out[N,I] = act(gate)·up with act silu (swiglu) or tanh-GELU (geglu). */
  forward(r: Recorder, o: { kind: "swiglu" | "geglu"; out: Binding; inp: Binding; N: number; I: number }): void;
  /** dinp[N,2I] = (dout·up·act'(gate) | dout·act(gate)), overwriting. */
  backward(r: Recorder, o: { kind: "swiglu" | "geglu"; dinp: Binding; inp: Binding; dout: Binding; N: number; I: number }): void;
}

/** Token positions grouped by token id on the CPU, so the wte gradient needs no atomics. */
export interface EmbeddingBuckets {
  /** Re-groups for a new batch of B·T token ids (uploads into preallocated buffers). */
  update(tokens: Uint32Array): void;
}

export interface EmbeddingKernels {
  /** out[B,T,C] = scale·wte[tokens[b,t]] (+ wpe[t] with learned positions); scale defaults to 1. */
  forward(r: Recorder, o: { out: Binding; tokens: Binding; wte: Binding; wpe?: Binding; scale?: number; B: number; T: number; C: number }): void;
  createBuckets(maxTokens: number): EmbeddingBuckets;
  /** dwte += scale·Σ over positions of each token; dwpe[t] += Σ_b dout[b,t] (with learned positions). */
  backward(r: Recorder, o: { dwte: Binding; dwpe?: Binding; scale?: number; dout: Binding; buckets: EmbeddingBuckets; B: number; T: number; C: number }): void;
}

export interface LoraKernels {
  /** out (= or += with accumulate) inp·keep/(1 − p) over n floats; keep is a pure hash of (key, index), so the same key gives the same mask. */
  dropout(r: Recorder, o: { out: Binding; inp: Binding; n: number; p: number; key: number; accumulate?: boolean }): void;
  /** out[row·stride + offset + j] += scale·inp[row·width + j] for rows × width. */
  addColumns(r: Recorder, o: { out: Binding; inp: Binding; rows: number; width: number; stride: number; offset: number; scale: number }): void;
  /** out[row·width + j] = scale·inp[row·stride + offset + j] for rows × width. */
  gatherColumns(r: Recorder, o: { out: Binding; inp: Binding; rows: number; width: number; stride: number; offset: number; scale: number }): void;
}

/**
 * Incremental decoding (shaders/kvcache.wgsl). A pass feeds N tokens; token n belongs to cache row rows[n] at
 * position positions[n] (u32 each). Caches are [maxRows, maxLength, KVH·hd] per layer.
 */
export interface KVCacheKernels {
  /** kCache[rows[n], positions[n]] = k[n], vCache[…] = v[n] (width = KVH·hd floats, through views). */
  append(r: Recorder, o: { kCache: Binding; vCache: Binding; k: TokenView; v: TokenView; rows: Binding; positions: Binding; N: number; width: number; maxLength: number }): void;
  /**
   * out[N, NH·hd] (dense): query head h of token n attends to keys 0 … positions[n] of its row (kv head h/(NH/KVH)),
   * softmax of scale·q·k (scale defaults to 1/√hd), soft-capped to softcap·tanh(s/softcap) first when softcap is set.
   */
  attend(r: Recorder, o: { out: Binding; q: TokenView; kCache: Binding; vCache: Binding; rows: Binding; positions: Binding; N: number; NH: number; KVH: number; hd: number; maxLength: number; scale?: number; softcap?: number }): void;
  /** out[n, :] += wpe[positions[n], :] over C floats (learned positions at per-token positions). */
  addPositions(r: Recorder, o: { out: Binding; wpe: Binding; positions: Binding; N: number; C: number }): void;
  /** out[i, :] = x[index[i], :] for i < n, C floats per row. */
  gather(r: Recorder, o: { out: Binding; x: Binding; index: Binding; n: number; C: number }): void;
}

export interface Kernels {
  context: KernelContext;
  matmul: MatmulKernels;
  crossEntropy: CrossEntropyKernels;
  adamw: AdamWKernels;
  residual: ResidualKernels;
  layerNorm: LayerNormKernels;
  gelu: GeluKernels;
  attention: AttentionKernels;
  embedding: EmbeddingKernels;
  rmsNorm: RMSNormKernels;
  rotary: RotaryKernels;
  gated: GatedKernels;
  softcap: SoftcapKernels;
  guard: GuardKernels;
  lora: LoraKernels;
  kvCache: KVCacheKernels;
}

/** Compiles every kernel family for `gpu` (pipelines are built up front, so shader errors surface here). */
export async function createKernels(gpu: Gpu, shaders = new ShaderLibrary(gpu.device), options: KernelOptions = {}): Promise<Kernels> {
  const context: KernelContext = { gpu, shaders, maxBindingBytes: options.maxBindingBytes };
  const matmulReady = createMatmulKernels(context);
  const [matmul, crossEntropy, adamw, residual, layerNorm, gelu, attention, embedding, rmsNorm, rotary, gated, softcap, guard, lora, kvCache] = await Promise.all([
    matmulReady,
    matmulReady.then((m) => createCrossEntropyKernels(context, m)),
    createAdamWKernels(context),
    createResidualKernels(context),
    createLayerNormKernels(context),
    createGeluKernels(context),
    createAttentionKernels(context),
    createEmbeddingKernels(context),
    createRMSNormKernels(context),
    createRotaryKernels(context),
    createGatedKernels(context),
    createSoftcapKernels(context),
    createGuardKernels(context),
    createLoraKernels(context),
    createKVCacheKernels(context),
  ]);
  return { context, matmul, crossEntropy, adamw, residual, layerNorm, gelu, attention, embedding, rmsNorm, rotary, gated, softcap, guard, lora, kvCache };
}
