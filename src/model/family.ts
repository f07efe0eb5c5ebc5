/**
 * Model families: one decoder graph (src/model/decoder.ts) whose blocks are chosen by a `FamilyDescription`, and
 * per family only the mapping of Hugging Face `config.json` keys and tensor names onto it. Kernels know nothing of
 * families; the graph knows only the description; this file is the one place that knows HF's names.
 *
 *   family   norm    positions                 attention                 mlp     block       head
 *   gpt2     layer   learned                   fused c_attn (Conv1D)     gelu    sequential  tied
 *   llama    rms     rotary (rope_scaling)     GQA, optional biases      swiglu  sequential  tied or untied
 *   qwen2    rms     rotary                    GQA, q/k/v biases         swiglu  sequential  tied or untied
 *   qwen3    rms     rotary                    GQA, per-head q/k RMSNorm swiglu  sequential  tied or untied
 *   gemma    rms1p   rotary, ×√hidden embed.   MQA/GQA, explicit head_dim geglu  sequential  tied
 *   gemma2   gemma + norms after attention and MLP too, soft-capped scores and logits, query_pre_attn_scalar
 *   phi      layer   partial rotary            MHA, biases everywhere    gelu    parallel    untied + bias
 *
 * `familyTensors(config)` lists every parameter tensor (HF name, shape) in the role the graph uses it for; the
 * flat parameter layout (params.ts), the loader and saver (hf.ts) and `inspect` all derive from it, so a family's
 * tensors are defined once. Anything the graph does not implement (MoE, sliding window, soft-capping, unknown
 * model_type) is refused with one line naming it, never silently ignored.
 */
import { UserError } from "../errors.ts";

export const FAMILIES = ["gpt2", "llama", "qwen2", "qwen3", "gemma", "gemma2", "phi"] as const;
export type FamilyName = (typeof FAMILIES)[number];

/** layer: LayerNorm with bias; rms: RMSNorm x·w; rms1p: Gemma's RMSNorm x·(1 + w). */
export type NormKind = "layer" | "rms" | "rms1p";
/** gelu: fc → GELU(tanh) → proj; swiglu: silu(gate)·up → down; geglu: GELU(tanh)(gate)·up → down. */
export type MlpKind = "gelu" | "swiglu" | "geglu";

export type RopeScaling =
  | { type: "none" }
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export type Positions =
  | { kind: "learned" }
  /** Rotary in HF's rotate-half convention on the first `fraction` of each head's dimensions. */
  | { kind: "rotary"; theta: number; fraction: number; scaling: RopeScaling };

/** The architecture choices of a decoder, independent of its sizes. */
export interface FamilyDescription {
  norm: NormKind;
  positions: Positions;
  /** Biases on the q, k, v projections / on the attention output projection. */
  qkvBias: boolean;
  outBias: boolean;
  /** Per-head RMSNorm of q and k (over head_dim) before the rotary embedding (Qwen3). */
  qkNorm: boolean;
  mlp: MlpKind;
  mlpBias: boolean;
  /** sequential: x + attn(norm1 x), then + mlp(norm2 ·); parallel: x + attn(norm1 x) + mlp(norm1 x) (Phi). */
  block: "sequential" | "parallel";
  /** Head tied to the token embedding (no lm_head tensor), else lm_head.weight (+ lm_head.bias with headBias). */
  tiedHead: boolean;
  headBias: boolean;
  /** Input embeddings are multiplied by this (Gemma: √hidden; else 1). The tied head uses the unscaled table. */
  embeddingScale: number;
  /** conv1d: matmul weights stored [in, out] (GPT-2's Conv1D); linear: [out, in] (nn.Linear). */
  weightLayout: "conv1d" | "linear";
  /** Gemma 2: a norm after the attention and after the MLP as well, before each residual add. */
  sandwichNorms?: boolean;
  /** Attention scores are scaled by this (default 1/√head_dim; Gemma 2: 1/√query_pre_attn_scalar). */
  attentionScale?: number;
  /** Gemma 2's soft-capping: scores → cap·tanh(scores/cap) before the softmax, and likewise the logits. */
  attentionSoftcap?: number;
  logitSoftcap?: number;
}

/** A model: its family, architecture and sizes. */
export interface ModelConfig {
  family: FamilyName;
  arch: FamilyDescription;
  nLayer: number;
  /** Query heads, key/value heads (nKVHead divides nHead: GQA; 1: MQA), and each head's width. */
  nHead: number;
  nKVHead: number;
  headDim: number;
  /** Hidden size (the residual stream's width). */
  nEmbd: number;
  /** MLP width (of each of gate and up for gated MLPs). */
  intermediateSize: number;
  vocabSize: number;
  /** Longest sequence the model takes (learned position table size, or max_position_embeddings). */
  nPositions: number;
  /** LayerNorm / RMSNorm epsilon. */
  layerNormEps: number;
  /** The config.json this came from, kept so that saving writes back every key it does not change. */
  source?: Record<string, unknown>;
}

/** What the graph uses a tensor for. Per block unless global. Fused roles (qkv, gated fc) have several parts. */
export type GlobalRole = "wte" | "wpe" | "normF.weight" | "normF.bias" | "head.weight" | "head.bias";
export type LayerRole =
  | "norm1.weight" | "norm1.bias" | "qkv.weight" | "qkv.bias" | "qNorm.weight" | "kNorm.weight"
  | "o.weight" | "o.bias" | "norm2.weight" | "norm2.bias" | "fc.weight" | "fc.bias" | "proj.weight" | "proj.bias"
  | "attnOutNorm.weight" | "mlpOutNorm.weight";

export interface TensorPart {
  /** HF tensor name, e.g. "model.layers.0.self_attn.k_proj.weight". */
  name: string;
  shape: number[];
}

/**
 * One role's tensors. Several parts (q/k/v, gate/up) are placed back to back so the graph reads them as one fused
 * matrix: parts concatenate along dim 0 ([out, in] rows), which is contiguous in row-major order.
 */
export interface TensorSlot {
  role: GlobalRole | LayerRole;
  /** Block index, or null for a global tensor. */
  layer: number | null;
  parts: TensorPart[];
  /** Shape of the fused tensor (the one part's shape when there is one part). */
  shape: number[];
  /** Weight-decayed: matmul weights and embeddings (rank 2), not biases or norm gains. */
  decay: boolean;
}

// ---- config.json → ModelConfig ----

type Json = Record<string, unknown>;

class Reader {
  constructor(readonly hf: Json, readonly source: string) {}
  fail(why: string): never {
    throw new UserError(`${this.source}: ${why}`);
  }
  has(key: string): boolean {
    return this.hf[key] !== undefined && this.hf[key] !== null;
  }
  int(key: string, fallback?: number): number {
    const value = this.has(key) ? this.hf[key] : fallback;
    if (typeof value !== "number" || !Number.isInteger(value)) this.fail(`${key} must be an integer, got ${JSON.stringify(this.hf[key])}`);
    return value as number;
  }
  num(key: string, fallback?: number): number {
    const value = this.has(key) ? this.hf[key] : fallback;
    if (typeof value !== "number" || !Number.isFinite(value)) this.fail(`${key} must be a number, got ${JSON.stringify(this.hf[key])}`);
    return value as number;
  }
  bool(key: string, fallback: boolean): boolean {
    const value = this.has(key) ? this.hf[key] : fallback;
    if (typeof value !== "boolean") this.fail(`${key} must be true or false, got ${JSON.stringify(this.hf[key])}`);
    return value as boolean;
  }
  str(key: string, fallback: string): string {
    const value = this.has(key) ? this.hf[key] : fallback;
    if (typeof value !== "string") this.fail(`${key} must be a string, got ${JSON.stringify(this.hf[key])}`);
    return value as string;
  }
  /** Refuses a key whose value turns on something the graph does not implement. */
  refuseIf(condition: boolean, what: string): void {
    if (condition) this.fail(`${what} is not supported`);
  }
}

const TANH_GELU = ["gelu_new", "gelu_pytorch_tanh", "gelu_fast"];

function gpt2FromHF(r: Reader): ModelConfig {
  const nEmbd = r.int("n_embd");
  const nHead = r.int("n_head");
  if (nEmbd % nHead !== 0) r.fail(`model config: nEmbd (${nEmbd}) must be divisible by nHead (${nHead})`);
  if (r.has("n_inner") && r.hf.n_inner !== 4 * nEmbd) r.fail(`n_inner ${r.hf.n_inner} is not supported (only null or 4·n_embd = ${4 * nEmbd})`);
  const activation = r.str("activation_function", "gelu_new");
  if (!TANH_GELU.includes(activation)) r.fail(`activation_function "${activation}" is not supported (only gelu_new, the tanh approximation)`);
  r.refuseIf(r.hf.scale_attn_by_inverse_layer_idx === true, "scale_attn_by_inverse_layer_idx");
  r.refuseIf(r.hf.scale_attn_weights === false, "scale_attn_weights=false");
  r.refuseIf(r.hf.reorder_and_upcast_attn === true, "reorder_and_upcast_attn");
  return {
    family: "gpt2",
    arch: GPT2_ARCH,
    nLayer: r.int("n_layer"),
    nHead,
    nKVHead: nHead,
    headDim: nEmbd / nHead,
    nEmbd,
    intermediateSize: 4 * nEmbd,
    vocabSize: r.int("vocab_size"),
    nPositions: r.has("n_positions") ? r.int("n_positions") : r.int("n_ctx"),
    layerNormEps: r.num("layer_norm_epsilon", 1e-5),
  };
}

export const GPT2_ARCH: FamilyDescription = {
  norm: "layer", positions: { kind: "learned" }, qkvBias: true, outBias: true, qkNorm: false, mlp: "gelu", mlpBias: true,
  block: "sequential", tiedHead: true, headBias: false, embeddingScale: 1, weightLayout: "conv1d",
};

function ropeScaling(r: Reader): RopeScaling {
  const s = r.hf.rope_scaling;
  if (s === undefined || s === null) return { type: "none" };
  if (typeof s !== "object") r.fail(`rope_scaling must be an object, got ${JSON.stringify(s)}`);
  const o = s as Json;
  const type = (o.rope_type ?? o.type) as unknown;
  const num = (key: string): number => {
    if (typeof o[key] !== "number") r.fail(`rope_scaling.${key} must be a number, got ${JSON.stringify(o[key])}`);
    return o[key] as number;
  };
  if (type === "default") return { type: "none" };
  if (type === "linear") return { type: "linear", factor: num("factor") };
  if (type === "llama3") {
    return {
      type: "llama3", factor: num("factor"), lowFreqFactor: num("low_freq_factor"), highFreqFactor: num("high_freq_factor"),
      originalMaxPositions: num("original_max_position_embeddings"),
    };
  }
  return r.fail(`rope_scaling type ${JSON.stringify(type)} is not supported (only default, linear, llama3)`);
}

/** The keys every Llama-like config (llama, mistral, qwen2, qwen3, gemma, gemma2, phi) shares. */
function decoderSizes(r: Reader, headDimDefault?: number) {
  const nEmbd = r.int("hidden_size");
  const nHead = r.int("num_attention_heads");
  const nKVHead = r.int("num_key_value_heads", nHead);
  return {
    nLayer: r.int("num_hidden_layers"),
    nHead,
    nKVHead,
    headDim: r.int("head_dim", headDimDefault ?? nEmbd / nHead),
    nEmbd,
    intermediateSize: r.int("intermediate_size"),
    vocabSize: r.int("vocab_size"),
    nPositions: r.int("max_position_embeddings"),
  };
}

function refuseCommon(r: Reader): void {
  for (const key of ["num_local_experts", "num_experts", "n_routed_experts"]) {
    r.refuseIf(r.has(key) && r.hf[key] !== 0, `mixture of experts (${key} = ${JSON.stringify(r.hf[key])})`);
  }
  r.refuseIf(r.has("pretraining_tp") && r.hf.pretraining_tp !== 1, `pretraining_tp = ${r.hf.pretraining_tp}`);
  r.refuseIf(r.hf.use_sliding_window === true, "sliding window attention (use_sliding_window = true)");
}

function activation(r: Reader, keys: string[], fallback: string): string {
  for (const key of keys) if (r.has(key)) return r.str(key, fallback);
  return fallback;
}

function llamaFromHF(r: Reader, family: "llama" | "qwen2" | "qwen3"): ModelConfig {
  refuseCommon(r);
  // Mistral's window only matters once a sequence is longer than it; refuse windows the model could reach.
  const sizes = decoderSizes(r, family === "qwen3" ? 128 : undefined);
  if (family !== "qwen2" && r.has("sliding_window") && r.int("sliding_window") < sizes.nPositions) {
    r.fail(`sliding window attention (sliding_window = ${r.hf.sliding_window}) is not supported`);
  }
  const act = activation(r, ["hidden_act"], "silu");
  if (act !== "silu") r.fail(`hidden_act "${act}" is not supported for ${family} (only silu)`);
  const attentionBias = r.bool("attention_bias", false);
  return {
    family,
    arch: {
      norm: "rms",
      positions: { kind: "rotary", theta: r.num("rope_theta", 10000), fraction: 1, scaling: ropeScaling(r) },
      qkvBias: family === "qwen2" ? true : attentionBias,
      outBias: family === "qwen2" ? false : attentionBias,
      qkNorm: family === "qwen3",
      mlp: "swiglu",
      mlpBias: family === "llama" ? r.bool("mlp_bias", false) : false,
      block: "sequential",
      tiedHead: r.bool("tie_word_embeddings", false),
      headBias: false,
      embeddingScale: 1,
      weightLayout: "linear",
    },
    ...sizes,
    layerNormEps: r.num("rms_norm_eps", 1e-6),
  };
}

function gemmaFromHF(r: Reader): ModelConfig {
  refuseCommon(r);
  if (r.hf.model_type === "gemma") r.refuseIf(r.has("attn_logit_softcapping") || r.has("final_logit_softcapping"), "logit soft-capping on a Gemma 1 config");
  const sizes = decoderSizes(r, 256);
  // GemmaMLP uses hidden_activation (tanh GELU when unset), whatever hidden_act says.
  const act = r.has("hidden_activation") ? r.str("hidden_activation", "") : "gelu_pytorch_tanh";
  if (!TANH_GELU.includes(act)) r.fail(`hidden_activation "${act}" is not supported (only gelu_pytorch_tanh)`);
  r.refuseIf(!r.bool("tie_word_embeddings", true), "an untied Gemma head (tie_word_embeddings = false)");
  const attentionBias = r.bool("attention_bias", false);
  return {
    family: "gemma",
    arch: {
      norm: "rms1p",
      positions: { kind: "rotary", theta: r.num("rope_theta", 10000), fraction: 1, scaling: ropeScaling(r) },
      qkvBias: attentionBias, outBias: attentionBias, qkNorm: false, mlp: "geglu", mlpBias: false, block: "sequential",
      tiedHead: true, headBias: false, embeddingScale: Math.sqrt(sizes.nEmbd), weightLayout: "linear",
    },
    ...sizes,
    layerNormEps: r.num("rms_norm_eps", 1e-6),
  };
}

/**
 * Gemma 2: Gemma with sandwich norms, soft-capped attention scores and logits, and sliding-window attention on
 * every other layer — identical to full attention while a sequence fits in the window, so sequences are limited
 * to the window (nPositions) rather than refused outright.
 */
function gemma2FromHF(r: Reader): ModelConfig {
  const gemma = gemmaFromHF(r);
  const window = r.has("sliding_window") ? r.int("sliding_window") : gemma.nPositions;
  const softcap = (key: string) => (r.has(key) ? r.num(key) : undefined);
  return {
    ...gemma,
    family: "gemma2",
    arch: {
      ...gemma.arch,
      sandwichNorms: true,
      attentionScale: 1 / Math.sqrt(r.num("query_pre_attn_scalar", gemma.headDim)),
      attentionSoftcap: softcap("attn_logit_softcapping"),
      logitSoftcap: softcap("final_logit_softcapping"),
    },
    nPositions: Math.min(gemma.nPositions, window),
  };
}

function phiFromHF(r: Reader): ModelConfig {
  refuseCommon(r);
  const sizes = decoderSizes(r);
  if (r.has("head_dim") && sizes.headDim !== sizes.nEmbd / sizes.nHead) r.fail(`head_dim ${sizes.headDim} is not hidden_size/num_attention_heads`);
  r.refuseIf(r.bool("qk_layernorm", false), "qk_layernorm = true");
  const act = activation(r, ["hidden_act"], "gelu_new");
  if (!TANH_GELU.includes(act)) r.fail(`hidden_act "${act}" is not supported for phi (only gelu_new)`);
  return {
    family: "phi",
    arch: {
      norm: "layer",
      positions: { kind: "rotary", theta: r.num("rope_theta", 10000), fraction: r.num("partial_rotary_factor", 0.5), scaling: ropeScaling(r) },
      qkvBias: true, outBias: true, qkNorm: false, mlp: "gelu", mlpBias: true, block: "parallel",
      tiedHead: r.bool("tie_word_embeddings", false), headBias: true, embeddingScale: 1, weightLayout: "linear",
    },
    ...sizes,
    layerNormEps: r.num("layer_norm_eps", 1e-5),
  };
}

/** Near relatives of the supported families, refused naming what they add. */
const NOT_YET: Record<string, string> = {
  gemma3: "Gemma 3: sliding-window attention, q/k norms, pre- and post-norms",
  mixtral: "mixture of experts",
  qwen2_moe: "mixture of experts",
  qwen3_moe: "mixture of experts",
  phi3: "Phi-3: fused qkv and gate/up tensors, su/longrope scaling",
};

/** model_type values read as a supported family (Mistral without a reachable sliding window is a Llama). */
const MODEL_TYPES: Record<string, (r: Reader) => ModelConfig> = {
  gpt2: gpt2FromHF,
  llama: (r) => llamaFromHF(r, "llama"),
  mistral: (r) => llamaFromHF(r, "llama"),
  qwen2: (r) => llamaFromHF(r, "qwen2"),
  qwen3: (r) => llamaFromHF(r, "qwen3"),
  gemma: gemmaFromHF,
  gemma2: gemma2FromHF,
  phi: phiFromHF,
};

/** Reads an HF `config.json` object of any supported family; refuses what the graph does not implement. */
export function configFromHF(json: unknown, source = "config.json"): ModelConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) throw new UserError(`${source}: expected a JSON object`);
  const r = new Reader(json as Json, source);
  const modelType = r.has("model_type") ? r.hf.model_type : "gpt2"; // old GPT-2 configs carry no model_type
  if (typeof modelType === "string" && Object.hasOwn(NOT_YET, modelType)) r.fail(`model_type "${modelType}" is not supported (${NOT_YET[modelType]})`);
  if (typeof modelType !== "string" || !Object.hasOwn(MODEL_TYPES, modelType)) {
    r.fail(`model_type ${JSON.stringify(modelType)} is not supported (supported: ${Object.keys(MODEL_TYPES).join(", ")})`);
  }
  const config = MODEL_TYPES[modelType as string](r);
  try {
    validateConfig(config);
  } catch (err) {
    r.fail((err as Error).message);
  }
  return { ...config, source: json as Json };
}

/** Throws a UserError naming the first setting that is not a valid decoder; returns the config otherwise. */
export function validateConfig(c: ModelConfig): ModelConfig {
  for (const key of ["nLayer", "nHead", "nKVHead", "headDim", "nEmbd", "intermediateSize", "vocabSize", "nPositions"] as const) {
    const value = c[key];
    if (!Number.isInteger(value) || value < 1) throw new UserError(`model config: ${key} must be a positive integer, got ${value}`);
  }
  if (c.arch.weightLayout === "conv1d" && c.nEmbd !== c.nHead * c.headDim) {
    throw new UserError(`model config: nEmbd (${c.nEmbd}) must be divisible by nHead (${c.nHead})`);
  }
  if (c.nHead % c.nKVHead !== 0) throw new UserError(`model config: nHead (${c.nHead}) must be a multiple of nKVHead (${c.nKVHead})`);
  if (!(c.layerNormEps > 0 && c.layerNormEps < 1)) throw new UserError(`model config: layerNormEps must be in (0, 1), got ${c.layerNormEps}`);
  if (c.arch.positions.kind === "rotary") {
    const rotary = rotaryDim(c);
    if (rotary < 2 || rotary % 2 !== 0) throw new UserError(`model config: rotary dimensions (${rotary} of head_dim ${c.headDim}) must be even and at least 2`);
  }
  return c;
}

/** Same family, architecture and sizes (the config.json each was read from may differ in keys we do not use). */
export function sameModel(a: ModelConfig, b: ModelConfig): boolean {
  const canonical = (value: unknown): unknown =>
    value && typeof value === "object" ? Object.fromEntries(Object.entries(value).filter(([k]) => k !== "source").sort(([k1], [k2]) => k1.localeCompare(k2)).map(([k, v]) => [k, canonical(v)])) : value;
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

/** Dimensions of each head that rotate (HF: int(head_dim · partial_rotary_factor)); 0 for learned positions. */
export function rotaryDim(c: ModelConfig): number {
  return c.arch.positions.kind === "rotary" ? Math.floor(c.headDim * c.arch.positions.fraction) : 0;
}

// ---- ModelConfig → config.json ----

/** The HF `config.json` object for this model: the source config's keys, with every key this file owns written. */
export function configToHF(c: ModelConfig, extra: Json = {}): Json {
  const base = { ...(c.source ?? {}) };
  if (c.family === "gpt2") {
    return {
      architectures: ["GPT2LMHeadModel"], model_type: "gpt2", activation_function: "gelu_new",
      attn_pdrop: 0, embd_pdrop: 0, resid_pdrop: 0, initializer_range: 0.02, scale_attn_weights: true, torch_dtype: "float32",
      ...base,
      n_layer: c.nLayer, n_head: c.nHead, n_embd: c.nEmbd, n_inner: null, vocab_size: c.vocabSize, n_positions: c.nPositions,
      n_ctx: c.nPositions, layer_norm_epsilon: c.layerNormEps, tie_word_embeddings: true, ...extra,
    };
  }
  const p = c.arch.positions;
  const rope = p.kind === "rotary" ? p : null;
  const scaling = !rope || rope.scaling.type === "none" ? null
    : rope.scaling.type === "linear" ? { rope_type: "linear", factor: rope.scaling.factor }
    : { rope_type: "llama3", factor: rope.scaling.factor, low_freq_factor: rope.scaling.lowFreqFactor, high_freq_factor: rope.scaling.highFreqFactor, original_max_position_embeddings: rope.scaling.originalMaxPositions };
  const architectures = { llama: "LlamaForCausalLM", qwen2: "Qwen2ForCausalLM", qwen3: "Qwen3ForCausalLM", gemma: "GemmaForCausalLM", gemma2: "Gemma2ForCausalLM", phi: "PhiForCausalLM" }[c.family];
  const sizes: Json = {
    architectures: base.architectures ?? [architectures],
    model_type: base.model_type ?? c.family,
    hidden_size: c.nEmbd, intermediate_size: c.intermediateSize, num_hidden_layers: c.nLayer, num_attention_heads: c.nHead,
    num_key_value_heads: c.nKVHead, head_dim: c.headDim, vocab_size: c.vocabSize, max_position_embeddings: c.nPositions,
    rope_theta: rope?.theta ?? 10000, rope_scaling: scaling, tie_word_embeddings: c.arch.tiedHead,
  };
  if (c.family === "phi") {
    Object.assign(sizes, { layer_norm_eps: c.layerNormEps, partial_rotary_factor: rope?.fraction ?? 1, hidden_act: "gelu_new", qk_layernorm: false });
  } else {
    sizes.rms_norm_eps = c.layerNormEps;
    if (c.family === "gemma" || c.family === "gemma2") sizes.hidden_activation = "gelu_pytorch_tanh";
    else sizes.hidden_act = "silu";
    if (c.family === "gemma2") {
      // nPositions is the window-limited length; the model's own maximum and its attention settings stay as read
      Object.assign(sizes, {
        max_position_embeddings: base.max_position_embeddings ?? c.nPositions,
        query_pre_attn_scalar: base.query_pre_attn_scalar ?? (c.arch.attentionScale ? Math.round(1 / c.arch.attentionScale ** 2) : c.headDim),
        attn_logit_softcapping: c.arch.attentionSoftcap ?? null,
        final_logit_softcapping: c.arch.logitSoftcap ?? null,
        sliding_window: base.sliding_window ?? c.nPositions,
      });
    }
    if (c.family === "llama" || c.family === "qwen3" || c.family === "gemma" || c.family === "gemma2") sizes.attention_bias = c.arch.qkvBias;
    if (c.family === "llama") sizes.mlp_bias = c.arch.mlpBias;
  }
  return { torch_dtype: "float32", ...base, ...sizes, ...extra };
}

// ---- tensors ----

const LLAMA_LIKE_NAMES = {
  wte: "model.embed_tokens.weight",
  normF: "model.norm",
  layer: (l: number) => `model.layers.${l}`,
  norm1: "input_layernorm",
  norm2: "post_attention_layernorm",
  q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj", o: "self_attn.o_proj",
  qNorm: "self_attn.q_norm", kNorm: "self_attn.k_norm",
  gate: "mlp.gate_proj", up: "mlp.up_proj", down: "mlp.down_proj",
  fc: "mlp.fc1", proj: "mlp.fc2",
};

/**
 * Every parameter tensor of a model of this config, in the role the graph uses it for, in HF's natural order
 * (embeddings, blocks, final norm, head). The single definition of a family's HF tensor names and shapes.
 */
export function familyTensors(c: ModelConfig): TensorSlot[] {
  const slots: TensorSlot[] = [];
  const add = (role: TensorSlot["role"], layer: number | null, parts: TensorPart[]) => {
    const shape = parts.length === 1 ? parts[0].shape : [parts.reduce((s, p) => s + p.shape[0], 0), ...parts[0].shape.slice(1)];
    slots.push({ role, layer, parts, shape, decay: shape.length === 2 });
  };
  const C = c.nEmbd;
  if (c.family === "gpt2") {
    add("wte", null, [{ name: "transformer.wte.weight", shape: [c.vocabSize, C] }]);
    add("wpe", null, [{ name: "transformer.wpe.weight", shape: [c.nPositions, C] }]);
    for (let l = 0; l < c.nLayer; l++) {
      const t = (suffix: string, shape: number[]) => [{ name: `transformer.h.${l}.${suffix}`, shape }];
      add("norm1.weight", l, t("ln_1.weight", [C]));
      add("norm1.bias", l, t("ln_1.bias", [C]));
      add("qkv.weight", l, t("attn.c_attn.weight", [C, 3 * C]));
      add("qkv.bias", l, t("attn.c_attn.bias", [3 * C]));
      add("o.weight", l, t("attn.c_proj.weight", [C, C]));
      add("o.bias", l, t("attn.c_proj.bias", [C]));
      add("norm2.weight", l, t("ln_2.weight", [C]));
      add("norm2.bias", l, t("ln_2.bias", [C]));
      add("fc.weight", l, t("mlp.c_fc.weight", [C, 4 * C]));
      add("fc.bias", l, t("mlp.c_fc.bias", [4 * C]));
      add("proj.weight", l, t("mlp.c_proj.weight", [4 * C, C]));
      add("proj.bias", l, t("mlp.c_proj.bias", [C]));
    }
    add("normF.weight", null, [{ name: "transformer.ln_f.weight", shape: [C] }]);
    add("normF.bias", null, [{ name: "transformer.ln_f.bias", shape: [C] }]);
    return slots;
  }
  const n = LLAMA_LIKE_NAMES;
  const a = c.arch;
  const layerNorm = a.norm === "layer";
  const gated = a.mlp !== "gelu";
  const I = c.intermediateSize;
  add("wte", null, [{ name: n.wte, shape: [c.vocabSize, C] }]);
  for (let l = 0; l < c.nLayer; l++) {
    const t = (suffix: string, shape: number[]): TensorPart => ({ name: `${n.layer(l)}.${suffix}`, shape });
    const q = c.nHead * c.headDim;
    const kv = c.nKVHead * c.headDim;
    add("norm1.weight", l, [t(`${n.norm1}.weight`, [C])]);
    if (layerNorm) add("norm1.bias", l, [t(`${n.norm1}.bias`, [C])]);
    add("qkv.weight", l, [t(`${n.q}.weight`, [q, C]), t(`${n.k}.weight`, [kv, C]), t(`${n.v}.weight`, [kv, C])]);
    if (a.qkvBias) add("qkv.bias", l, [t(`${n.q}.bias`, [q]), t(`${n.k}.bias`, [kv]), t(`${n.v}.bias`, [kv])]);
    if (a.qkNorm) {
      add("qNorm.weight", l, [t(`${n.qNorm}.weight`, [c.headDim])]);
      add("kNorm.weight", l, [t(`${n.kNorm}.weight`, [c.headDim])]);
    }
    const o = c.family === "phi" ? "self_attn.dense" : n.o;
    add("o.weight", l, [t(`${o}.weight`, [C, q])]);
    if (a.outBias) add("o.bias", l, [t(`${o}.bias`, [C])]);
    if (a.sandwichNorms) {
      add("attnOutNorm.weight", l, [t("post_attention_layernorm.weight", [C])]);
      add("norm2.weight", l, [t("pre_feedforward_layernorm.weight", [C])]);
    } else if (a.block === "sequential") {
      add("norm2.weight", l, [t(`${n.norm2}.weight`, [C])]);
      if (layerNorm) add("norm2.bias", l, [t(`${n.norm2}.bias`, [C])]);
    }
    if (gated) {
      add("fc.weight", l, [t(`${n.gate}.weight`, [I, C]), t(`${n.up}.weight`, [I, C])]);
      if (a.mlpBias) add("fc.bias", l, [t(`${n.gate}.bias`, [I]), t(`${n.up}.bias`, [I])]);
      add("proj.weight", l, [t(`${n.down}.weight`, [C, I])]);
      if (a.mlpBias) add("proj.bias", l, [t(`${n.down}.bias`, [C])]);
      if (a.sandwichNorms) add("mlpOutNorm.weight", l, [t("post_feedforward_layernorm.weight", [C])]);
    } else {
      add("fc.weight", l, [t(`${n.fc}.weight`, [I, C])]);
      if (a.mlpBias) add("fc.bias", l, [t(`${n.fc}.bias`, [I])]);
      add("proj.weight", l, [t(`${n.proj}.weight`, [C, I])]);
      if (a.mlpBias) add("proj.bias", l, [t(`${n.proj}.bias`, [C])]);
    }
  }
  const normF = c.family === "phi" ? "model.final_layernorm" : n.normF;
  add("normF.weight", null, [{ name: `${normF}.weight`, shape: [C] }]);
  if (layerNorm) add("normF.bias", null, [{ name: `${normF}.bias`, shape: [C] }]);
  if (!a.tiedHead) add("head.weight", null, [{ name: "lm_head.weight", shape: [c.vocabSize, C] }]);
  if (a.headBias) add("head.bias", null, [{ name: "lm_head.bias", shape: [c.vocabSize] }]);
  return slots;
}

/** Number of parameters (a tied head adds nothing). */
export function parameterCount(c: ModelConfig): number {
  return familyTensors(c).reduce((sum, s) => sum + s.shape.reduce((a, b) => a * b, 1), 0);
}

/** HF tensor names a checkpoint may hold that are not parameters (GPT-2's causal-mask buffers, rotary caches). */
export function isIgnoredTensor(name: string): boolean {
  return name.endsWith(".attn.bias") || name.endsWith(".attn.masked_bias") || name.endsWith("rotary_emb.inv_freq");
}

/** The name a stored tensor has in familyTensors (GPT-2 checkpoints may omit the "transformer." prefix). */
export function canonicalTensorName(c: ModelConfig, name: string): string {
  if (c.family === "gpt2" && !name.startsWith("transformer.") && name !== "lm_head.weight") return `transformer.${name}`;
  return name;
}
