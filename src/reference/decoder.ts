/**
 * A float64 decoder forward and backward pass (every family of src/model/family.ts) composed from the reference
 * ops, in the style of llm.c's gpt2_forward / gpt2_backward: every activation is kept, then walked back in reverse.
 * It works on the flat parameter layout of src/model/params.ts (as float64), so its gradients line up with the GPU
 * trainer's tensor by tensor. It is the middle link of the test chain: WGSL kernels ≈ ops.ts, this model ≈
 * PyTorch, GPU graph ≈ this.
 *
 * The loss is the weighted mean of per-token cross-entropies, Σ w·nll / Σ w, so tokens with weight 0 (prompt,
 * padding) do not count and the weights can emphasise rationale or answer tokens.
 */
import type { ModelConfig } from "../model/config.ts";
import { rotaryDim } from "../model/family.ts";
import { type ParamLayout, paramLayout, type SlotSpec, type TensorSpec, tensorView } from "../model/params.ts";
import { inverseFrequencies } from "../gpu/kernels/rotary.ts";
import { type AdapterSpec, adapterViews, dropoutKey, type LoraLayout, type LoraRole } from "../model/lora.ts";
import * as ops from "./ops.ts";
import { dropoutMultipliers, loraBackward, loraForward } from "./lora.ts";

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
  /** ∂loss/∂adapters, flat in the LoRA layout (with `lora`). */
  loraGrads: Float64Array | null;
  /** ∂loss/∂(input embeddings) [B,T,C]. */
  dembeddings: Float64Array;
}

/** LoRA adapters on the linear layers (src/model/lora.ts), float64 in `layout`; dropout masks keyed by `dropoutSeed`. */
export interface ReferenceLora {
  layout: LoraLayout;
  adapters: Float64Array;
  /** A training pass's dropout seed (the GPU model's dropoutSeed); without one, no dropout (an evaluation pass). */
  dropoutSeed?: number;
}

/** A norm's output and what its backward pass needs. */
interface NormSaved {
  out: Float64Array;
  mean?: Float64Array;
  rstd: Float64Array;
}

/** Activations of one block saved by the forward pass for the backward pass. */
interface BlockActivations {
  input: Float64Array; // residual stream entering the block
  norm1: NormSaved;
  qkv: Float64Array; // the projection's output [N, W]
  qNormed?: NormSaved; // per-head q/k norms (rows N·H of hd)
  kNormed?: NormSaved;
  attnQkv: Float64Array; // q | k | v as attention read them (after q/k norm and rotary) [N, W]
  attention: ReturnType<typeof ops.groupedAttentionForward>;
  attOut: Float64Array; // the attention branch's output projection
  attOutNorm?: NormSaved; // Gemma 2's sandwich norms
  mlpOut?: Float64Array;
  mlpOutNorm?: NormSaved;
  residual2: Float64Array; // after the attention branch
  norm2?: NormSaved;
  fc: Float64Array; // MLP pre-activation [N, F]
  act: Float64Array; // [N, I]
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
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

/** Columns [from, from + width) of each row of x[rows, stride]. */
function columns(x: Float64Array, rows: number, stride: number, from: number, width: number): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) out.set(x.subarray(r * stride + from, r * stride + from + width), r * width);
  return out;
}

function setColumns(x: Float64Array, rows: number, stride: number, from: number, part: Float64Array, width: number): void {
  for (let r = 0; r < rows; r++) x.set(part.subarray(r * width, (r + 1) * width), r * stride + from);
}

/**
 * Loss, logits and all parameter gradients for one batch of a model of any family; `params` is float64 in
 * paramLayout(config). The same blocks as the GPU graph (src/model/decoder.ts), written as plain loops over ops.ts.
 */
export function decoderForwardBackward(config: ModelConfig, params: Float64Array, batch: Batch, layout: ParamLayout = paramLayout(config), lora?: ReferenceLora): ForwardBackwardResult {
  checkBatch(config, batch);
  const { B, T } = batch;
  const { nEmbd: C, nHead: NH, nKVHead: KVH, headDim: hd, vocabSize: V, intermediateSize: I, layerNormEps: eps, arch } = config;
  const N = B * T;
  const Q = NH * hd, KV = KVH * hd, W = Q + 2 * KV;
  const gated = arch.mlp !== "gelu";
  const F = gated ? 2 * I : I;
  const R = rotaryDim(config);
  const invFreq = arch.positions.kind === "rotary" ? inverseFrequencies(R, arch.positions.theta, arch.positions.scaling) : null;
  const gain = arch.norm === "rms1p" ? 1 : 0;
  const attentionOptions = { scale: arch.attentionScale, softcap: arch.attentionSoftcap };
  const p = (spec: TensorSpec) => tensorView(params, spec);
  const transB = arch.weightLayout === "linear";
  const grads = new Float64Array(layout.size);

  const loraGrads = lora ? new Float64Array(lora.layout.size) : null;
  const adaptersOf = (layer: number, role: LoraRole): AdapterSpec[] => lora?.layout.byLayer[layer]?.[role] ?? [];
  const adapterShape = (a: AdapterSpec) => ({ N, inDim: a.inDim, rows: a.rows, rank: lora!.layout.rank, scale: lora!.layout.scale });
  const maskOf = (a: AdapterSpec) => (lora!.dropoutSeed === undefined ? null : dropoutMultipliers(dropoutKey(lora!.dropoutSeed, a.index), N * a.inDim, lora!.layout.settings.dropout));
  /** x·W (+ b), plus each adapter's scale·dropout(x)·Aᵀ·Bᵀ in its rows of the output. */
  const linear = (x: Float64Array, w: SlotSpec, b: SlotSpec | undefined, outDim: number, inDim: number, adapters: AdapterSpec[] = []) => {
    const y = ops.matmul(x, p(w), b ? p(b) : null, N, outDim, inDim, false, transB);
    for (const a of adapters) {
      const { A, B: Bm } = adapterViews(lora!.adapters, lora!.layout, a);
      const delta = loraForward(x, A, Bm, adapterShape(a), maskOf(a));
      setColumns(y, N, outDim, a.rowStart, add(columns(y, N, outDim, a.rowStart, a.rows), delta), a.rows);
    }
    return y;
  };
  /** Accumulates dW and db (and the adapters' dA, dB), returns dx. */
  const linearBackward = (dy: Float64Array, x: Float64Array, w: SlotSpec, b: SlotSpec | undefined, outDim: number, inDim: number, adapters: AdapterSpec[] = []) => {
    if (transB) accumulate(grads, w, ops.matmul(dy, x, null, outDim, inDim, N, true, false));
    else accumulate(grads, w, ops.matmul(x, dy, null, inDim, outDim, N, true, false));
    if (b) accumulate(grads, b, ops.biasBackward(dy, N, outDim));
    let dx = ops.matmul(dy, p(w), null, N, inDim, outDim, false, !transB);
    for (const a of adapters) {
      const { A, B: Bm } = adapterViews(lora!.adapters, lora!.layout, a);
      const g = loraBackward(columns(dy, N, outDim, a.rowStart, a.rows), x, A, Bm, adapterShape(a), maskOf(a));
      const views = adapterViews(loraGrads!, lora!.layout, a);
      g.dA.forEach((v, i) => (views.A[i] += v));
      g.dB.forEach((v, i) => (views.B[i] += v));
      dx = add(dx, g.dx);
    }
    return dx;
  };
  const norm = (x: Float64Array, w: SlotSpec, b: SlotSpec | undefined, rows: number, width: number): NormSaved =>
    arch.norm === "layer" ? ops.layerNormForward(x, p(w), p(b!), rows, width, eps) : ops.rmsNormForward(x, p(w), rows, width, eps, gain);
  const normBackward = (dy: Float64Array, x: Float64Array, saved: NormSaved, w: SlotSpec, b: SlotSpec | undefined, rows: number, width: number) => {
    if (arch.norm === "layer") {
      const g = ops.layerNormBackward(dy, x, p(w), saved.mean!, saved.rstd, rows, width);
      accumulate(grads, w, g.dweight);
      accumulate(grads, b!, g.dbias);
      return g.dinp;
    }
    const g = ops.rmsNormBackward(dy, x, p(w), saved.rstd, rows, width, gain);
    accumulate(grads, w, g.dweight);
    return g.dinp;
  };
  const activation = (fc: Float64Array) => (gated ? ops.gatedForward(fc, N, I, arch.mlp as "swiglu" | "geglu") : ops.gelu(fc));
  const activationBackward = (dact: Float64Array, fc: Float64Array) => (gated ? ops.gatedBackward(dact, fc, N, I, arch.mlp as "swiglu" | "geglu") : ops.geluBackward(fc, dact));

  // ---- forward ----
  const wpe = layout.global.wpe;
  let residual = ops.embeddingForward(batch.tokens, p(layout.wte), wpe ? p(wpe) : null, B, T, C, arch.embeddingScale);
  const blocks: BlockActivations[] = [];
  for (const [l, s] of layout.layers.entries()) {
    const input = residual;
    const norm1 = norm(input, s["norm1.weight"]!, s["norm1.bias"], N, C);
    const qkv = linear(norm1.out, s["qkv.weight"]!, s["qkv.bias"], W, C, adaptersOf(l, "qkv.weight"));
    const attnQkv = Float64Array.from(qkv);
    const a: Partial<BlockActivations> = { input, norm1, qkv, attnQkv };
    for (const [which, from, H] of [["q", 0, NH], ["k", Q, KVH]] as const) {
      let part = columns(qkv, N, W, from, H * hd);
      if (arch.qkNorm) {
        const saved = ops.rmsNormForward(part, p(s[which === "q" ? "qNorm.weight" : "kNorm.weight"]!), N * H, hd, eps, 0);
        a[which === "q" ? "qNormed" : "kNormed"] = saved;
        part = saved.out;
      }
      if (invFreq) part = ops.rotary(part, N, T, H, hd, R, invFreq);
      setColumns(attnQkv, N, W, from, part, H * hd);
    }
    const attention = ops.groupedAttentionForward(attnQkv, { B, T, NH, KVH, hs: hd }, attentionOptions);
    const attOut = linear(attention.out, s["o.weight"]!, s["o.bias"], C, Q, adaptersOf(l, "o.weight"));
    const attOutNorm = s["attnOutNorm.weight"] ? norm(attOut, s["attnOutNorm.weight"], undefined, N, C) : undefined;
    const residual2 = add(input, attOutNorm?.out ?? attOut);
    const norm2 = s["norm2.weight"] ? norm(residual2, s["norm2.weight"], s["norm2.bias"], N, C) : undefined;
    const fc = linear((norm2 ?? norm1).out, s["fc.weight"]!, s["fc.bias"], F, C, adaptersOf(l, "fc.weight"));
    const act = activation(fc);
    const mlpOut = linear(act, s["proj.weight"]!, s["proj.bias"], C, I, adaptersOf(l, "proj.weight"));
    const mlpOutNorm = s["mlpOutNorm.weight"] ? norm(mlpOut, s["mlpOutNorm.weight"], undefined, N, C) : undefined;
    residual = add(residual2, mlpOutNorm?.out ?? mlpOut);
    blocks.push({ ...a, attention, attOut, attOutNorm, mlpOut, mlpOutNorm, residual2, norm2, fc, act } as BlockActivations);
  }
  const g = layout.global;
  const normF = norm(residual, g["normF.weight"]!, g["normF.bias"], N, C);
  const head = g["head.weight"] ?? layout.wte;
  const rawLogits = ops.matmul(normF.out, p(head), g["head.bias"] ? p(g["head.bias"]) : null, N, V, C, false, true);
  const logits = arch.logitSoftcap ? ops.softcap(rawLogits, arch.logitSoftcap) : rawLogits;

  let weightSum = 0;
  for (const w of batch.weights) weightSum += w;
  if (!(weightSum > 0)) throw new Error("loss weights sum to zero: no token to learn from");
  const ce = ops.crossEntropy(logits, batch.targets, batch.weights, N, V, 1 / weightSum);
  const losses = ce.losses;
  const dlogits = arch.logitSoftcap ? ops.softcapBackward(ce.dlogits, rawLogits, arch.logitSoftcap) : ce.dlogits;
  const loss = losses.reduce((sum, x) => sum + x, 0) / weightSum;

  // ---- backward ----
  accumulate(grads, head, ops.matmul(dlogits, normF.out, null, V, C, N, true, false));
  if (g["head.bias"]) accumulate(grads, g["head.bias"], ops.biasBackward(dlogits, N, V));
  const dnormF = ops.matmul(dlogits, p(head), null, N, C, V, false, false);
  let dresidual = normBackward(dnormF, residual, normF, g["normF.weight"]!, g["normF.bias"], N, C);
  for (let i = layout.layers.length - 1; i >= 0; i--) {
    const s = layout.layers[i];
    const a = blocks[i];
    // MLP branch: out = residual2 + proj(act(fc(norm2(residual2))))   [parallel: fc(norm1(input))]
    const dmlpOut = a.mlpOutNorm ? normBackward(dresidual, a.mlpOut!, a.mlpOutNorm, s["mlpOutNorm.weight"]!, undefined, N, C) : dresidual;
    const dact = linearBackward(dmlpOut, a.act, s["proj.weight"]!, s["proj.bias"], C, I, adaptersOf(i, "proj.weight"));
    const dfc = activationBackward(dact, a.fc);
    const dmlpIn = linearBackward(dfc, (a.norm2 ?? a.norm1).out, s["fc.weight"]!, s["fc.bias"], F, C, adaptersOf(i, "fc.weight"));
    const dresidual2 = a.norm2 ? add(dresidual, normBackward(dmlpIn, a.residual2, a.norm2, s["norm2.weight"]!, s["norm2.bias"], N, C)) : dresidual;
    // attention branch: residual2 = input + o(attention(qkv(norm1(input))))
    const dattOut = a.attOutNorm ? normBackward(dresidual2, a.attOut, a.attOutNorm, s["attnOutNorm.weight"]!, undefined, N, C) : dresidual2;
    const datt = linearBackward(dattOut, a.attention.out, s["o.weight"]!, s["o.bias"], C, Q, adaptersOf(i, "o.weight"));
    const dattnQkv = ops.groupedAttentionBackward(datt, a.attnQkv, a.attention.att, { B, T, NH, KVH, hs: hd }, attentionOptions);
    const dqkv = Float64Array.from(dattnQkv);
    for (const [which, from, H] of [["q", 0, NH], ["k", Q, KVH]] as const) {
      let part = columns(dattnQkv, N, W, from, H * hd);
      if (invFreq) part = ops.rotary(part, N, T, H, hd, R, invFreq, -1);
      if (arch.qkNorm) {
        const role = which === "q" ? "qNorm.weight" : "kNorm.weight";
        const saved = (which === "q" ? a.qNormed : a.kNormed)!;
        const gq = ops.rmsNormBackward(part, columns(a.qkv, N, W, from, H * hd), p(s[role]!), saved.rstd, N * H, hd, 0);
        accumulate(grads, s[role]!, gq.dweight);
        part = gq.dinp;
      }
      setColumns(dqkv, N, W, from, part, H * hd);
    }
    let dnorm1 = linearBackward(dqkv, a.norm1.out, s["qkv.weight"]!, s["qkv.bias"], W, C, adaptersOf(i, "qkv.weight"));
    if (!a.norm2) dnorm1 = add(dnorm1, dmlpIn);
    dresidual = add(dresidual2, normBackward(dnorm1, a.input, a.norm1, s["norm1.weight"]!, s["norm1.bias"], N, C));
  }
  const embeddingGrads = ops.embeddingBackward(dresidual, batch.tokens, B, T, C, V, config.nPositions, arch.embeddingScale);
  accumulate(grads, layout.wte, embeddingGrads.dwte);
  if (wpe) accumulate(grads, wpe, embeddingGrads.dwpe);
  return { loss, logits, grads, loraGrads, dembeddings: dresidual };
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
