/**
 * A float64 GPT-2 forward and backward pass composed from the reference ops, in the style of llm.c's
 * gpt2_forward / gpt2_backward: every activation is kept, then walked back in reverse. It works on the flat
 * parameter layout of src/model/params.ts (as float64), so its gradients line up with the GPU trainer's tensor by
 * tensor. It is the middle link of the test chain: WGSL kernels ≈ ops.ts, this model ≈ PyTorch, GPU graph ≈ this.
 *
 * The loss is the weighted mean of per-token cross-entropies, Σ w·nll / Σ w, so tokens with weight 0 (prompt,
 * padding) do not count and the weights can emphasise rationale or answer tokens.
 */
import type { ModelConfig } from "../model/config.ts";
import { type ParamLayout, paramLayout, type TensorSpec, tensorView } from "../model/params.ts";
import * as ops from "./ops.ts";

export interface Batch {
  /** Input token ids [B,T]. */
  tokens: Uint32Array;
  /** Next-token targets [B,T]. */
  targets: Uint32Array;
  /** Per-token loss weights [B,T]. */
  weights: Float64Array;
  B: number;
  T: number;
}

export interface ForwardBackwardResult {
  /** Σ w·nll / Σ w. */
  loss: number;
  /** [B,T,V] */
  logits: Float64Array;
  /** ∂loss/∂params, flat in the parameter layout. */
  grads: Float64Array;
}

/** Activations of one transformer block saved by the forward pass for the backward pass. */
interface BlockActivations {
  input: Float64Array; // residual stream entering the block
  ln1: ReturnType<typeof ops.layerNormForward>;
  qkv: Float64Array;
  attention: ReturnType<typeof ops.attentionForward>;
  residual2: Float64Array; // after the attention branch
  ln2: ReturnType<typeof ops.layerNormForward>;
  fc: Float64Array; // pre-GELU
  fcGelu: Float64Array;
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/** y[M,N] = x[M,K]·W[K,N] + b — HF's Conv1D. */
function linear(x: Float64Array, params: Float64Array, weight: TensorSpec, bias: TensorSpec, M: number): Float64Array {
  const [K, N] = weight.shape;
  return ops.matmul(x, tensorView(params, weight), tensorView(params, bias), M, N, K, false, false);
}

/** Backward of `linear`: accumulates dW = xᵀ·dy and db = Σ dy into grads, returns dx = dy·Wᵀ. */
function linearBackward(dy: Float64Array, x: Float64Array, params: Float64Array, grads: Float64Array, weight: TensorSpec, bias: TensorSpec, M: number): Float64Array {
  const [K, N] = weight.shape;
  accumulate(grads, weight, ops.matmul(x, dy, null, K, N, M, true, false));
  accumulate(grads, bias, ops.biasBackward(dy, M, N));
  return ops.matmul(dy, tensorView(params, weight), null, M, K, N, false, true);
}

/** Backward of a LayerNorm over x[M,C]: accumulates dweight and dbias into grads, returns dx. */
function layerNormBackward(
  dy: Float64Array,
  x: Float64Array,
  saved: { mean: Float64Array; rstd: Float64Array },
  params: Float64Array,
  grads: Float64Array,
  weight: TensorSpec,
  bias: TensorSpec,
  M: number,
): Float64Array {
  const g = ops.layerNormBackward(dy, x, tensorView(params, weight), saved.mean, saved.rstd, M, weight.size);
  accumulate(grads, weight, g.dweight);
  accumulate(grads, bias, g.dbias);
  return g.dinp;
}

function accumulate(grads: Float64Array, spec: TensorSpec, value: Float64Array): void {
  const view = tensorView(grads, spec);
  for (let i = 0; i < view.length; i++) view[i] += value[i];
}

function checkBatch(config: ModelConfig, batch: Batch): void {
  const n = batch.B * batch.T;
  if (batch.tokens.length !== n || batch.targets.length !== n || batch.weights.length !== n) throw new Error("batch arrays must have B·T entries");
  if (batch.T > config.nPositions) throw new Error(`T=${batch.T} exceeds nPositions=${config.nPositions}`);
  for (const id of [...batch.tokens, ...batch.targets]) if (id >= config.vocabSize) throw new Error(`token id ${id} ≥ vocabSize`);
}

/** Loss, logits and all parameter gradients for one batch; `params` is float64 in paramLayout(config). */
export function gpt2ForwardBackward(config: ModelConfig, params: Float64Array, batch: Batch, layout: ParamLayout = paramLayout(config)): ForwardBackwardResult {
  checkBatch(config, batch);
  const { B, T } = batch;
  const { nEmbd: C, nHead: NH, vocabSize: V, layerNormEps: eps } = config;
  const BT = B * T;
  const p = (spec: TensorSpec) => tensorView(params, spec);

  // ---- forward ----
  let residual = ops.embeddingForward(batch.tokens, p(layout.wte), p(layout.global.wpe!), B, T, C);
  const blocks: BlockActivations[] = [];
  for (const l of layout.layers) {
    const input = residual;
    const ln1 = ops.layerNormForward(input, p(l["norm1.weight"]!), p(l["norm1.bias"]!), BT, C, eps);
    const qkv = linear(ln1.out, params, l["qkv.weight"]!, l["qkv.bias"]!, BT);
    const attention = ops.attentionForward(qkv, B, T, C, NH);
    const residual2 = add(input, linear(attention.out, params, l["o.weight"]!, l["o.bias"]!, BT));
    const ln2 = ops.layerNormForward(residual2, p(l["norm2.weight"]!), p(l["norm2.bias"]!), BT, C, eps);
    const fc = linear(ln2.out, params, l["fc.weight"]!, l["fc.bias"]!, BT);
    const fcGelu = ops.gelu(fc);
    residual = add(residual2, linear(fcGelu, params, l["proj.weight"]!, l["proj.bias"]!, BT));
    blocks.push({ input, ln1, qkv, attention, residual2, ln2, fc, fcGelu });
  }
  const lnf = ops.layerNormForward(residual, p(layout.global["normF.weight"]!), p(layout.global["normF.bias"]!), BT, C, eps);
  const logits = ops.matmul(lnf.out, p(layout.wte), null, BT, V, C, false, true); // lm_head tied to wte

  let weightSum = 0;
  for (const w of batch.weights) weightSum += w;
  if (!(weightSum > 0)) throw new Error("loss weights sum to zero: no token to learn from");
  const { losses, dlogits } = ops.crossEntropy(logits, batch.targets, batch.weights, BT, V, 1 / weightSum);
  const loss = losses.reduce((s, x) => s + x, 0) / weightSum;

  // ---- backward ----
  const grads = new Float64Array(layout.size);
  accumulate(grads, layout.wte, ops.matmul(dlogits, lnf.out, null, V, C, BT, true, false));
  const dlnf = ops.matmul(dlogits, p(layout.wte), null, BT, C, V, false, false);
  let dresidual = layerNormBackward(dlnf, residual, lnf, params, grads, layout.global["normF.weight"]!, layout.global["normF.bias"]!, BT);
  for (let i = layout.layers.length - 1; i >= 0; i--) {
    const l = layout.layers[i];
    const a = blocks[i];
    // MLP branch: residual = residual2 + fcProj(gelu(fc(ln2(residual2))))
    const dfcGelu = linearBackward(dresidual, a.fcGelu, params, grads, l["proj.weight"]!, l["proj.bias"]!, BT);
    const dfc = ops.geluBackward(a.fc, dfcGelu);
    const dln2 = linearBackward(dfc, a.ln2.out, params, grads, l["fc.weight"]!, l["fc.bias"]!, BT);
    const dresidual2 = add(dresidual, layerNormBackward(dln2, a.residual2, a.ln2, params, grads, l["norm2.weight"]!, l["norm2.bias"]!, BT));
    // attention branch: residual2 = input + attnProj(attention(qkv(ln1(input))))
    const datt = linearBackward(dresidual2, a.attention.out, params, grads, l["o.weight"]!, l["o.bias"]!, BT);
    const dqkv = ops.attentionBackward(datt, a.qkv, a.attention.att, B, T, C, NH);
    const dln1 = linearBackward(dqkv, a.ln1.out, params, grads, l["qkv.weight"]!, l["qkv.bias"]!, BT);
    dresidual = add(dresidual2, layerNormBackward(dln1, a.input, a.ln1, params, grads, l["norm1.weight"]!, l["norm1.bias"]!, BT));
  }
  const embeddingGrads = ops.embeddingBackward(dresidual, batch.tokens, B, T, C, V, config.nPositions);
  accumulate(grads, layout.wte, embeddingGrads.dwte);
  accumulate(grads, layout.global.wpe!, embeddingGrads.dwpe);
  return { loss, logits, grads };
}

export interface OptimizerSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global-norm clip threshold (0 = no clipping). */
  maxGradNorm: number;
}

export interface OptimizerState {
  m: Float64Array;
  v: Float64Array;
  /** Steps taken so far. */
  step: number;
}

export function createOptimizerState(layout: ParamLayout): OptimizerState {
  return { m: new Float64Array(layout.size), v: new Float64Array(layout.size), step: 0 };
}

/**
 * One training-step update as torch does it: clip_grad_norm_ over all gradients, then AdamW with weight decay on
 * the layout's decayed range [0, decayEnd) and none on the rest. Returns the pre-clip gradient norm.
 */
export function optimizerStep(layout: ParamLayout, params: Float64Array, grads: Float64Array, state: OptimizerState, s: OptimizerSettings): number {
  const normSquared = ops.gradNormSquared(grads);
  state.step += 1;
  const base = { lr: s.lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, step: state.step, clipScale: ops.clipScale(normSquared, s.maxGradNorm) };
  const range = (a: Float64Array, start: number, end: number) => a.subarray(start, end);
  const update = (start: number, end: number, weightDecay: number) =>
    ops.adamwStep(range(params, start, end), range(grads, start, end), range(state.m, start, end), range(state.v, start, end), { ...base, weightDecay });
  update(0, layout.decayEnd, s.weightDecay);
  update(layout.decayEnd, layout.size, 0);
  return Math.sqrt(normSquared);
}
