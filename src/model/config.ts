/**
 * GPT-2 hyper-parameters: presets, validation, and the Hugging Face `config.json` form (read and write), so that a
 * model folder written here loads in `transformers` and a GPT-2 checkpoint from the hub loads here.
 */
import { UserError } from "../errors.ts";

export interface GPT2Config {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  vocabSize: number;
  /** Longest sequence the position table covers. */
  nPositions: number;
  layerNormEps: number;
}

const GPT2_VOCAB = 50257;

/** Named sizes: the OpenAI GPT-2 family, and small students that train in minutes on a small GPU. */
export const PRESETS = {
  gpt2: { nLayer: 12, nHead: 12, nEmbd: 768, vocabSize: GPT2_VOCAB, nPositions: 1024, layerNormEps: 1e-5 },
  "gpt2-medium": { nLayer: 24, nHead: 16, nEmbd: 1024, vocabSize: GPT2_VOCAB, nPositions: 1024, layerNormEps: 1e-5 },
  "gpt2-large": { nLayer: 36, nHead: 20, nEmbd: 1280, vocabSize: GPT2_VOCAB, nPositions: 1024, layerNormEps: 1e-5 },
  small: { nLayer: 6, nHead: 8, nEmbd: 256, vocabSize: 2048, nPositions: 512, layerNormEps: 1e-5 },
  tiny: { nLayer: 4, nHead: 4, nEmbd: 128, vocabSize: 2048, nPositions: 512, layerNormEps: 1e-5 },
  micro: { nLayer: 2, nHead: 2, nEmbd: 64, vocabSize: 2048, nPositions: 256, layerNormEps: 1e-5 },
} satisfies Record<string, GPT2Config>;

export type PresetName = keyof typeof PRESETS;

/** A preset by name, with optional overrides (e.g. the vocabulary size of the tokenizer actually used). */
export function presetConfig(name: string, overrides: Partial<GPT2Config> = {}): GPT2Config {
  if (!Object.hasOwn(PRESETS, name)) {
    throw new UserError(`unknown model size "${name}" (known: ${Object.keys(PRESETS).join(", ")})`);
  }
  return validateConfig({ ...PRESETS[name as PresetName], ...overrides });
}

/** Throws a UserError naming the first field that is not a valid GPT-2 setting; returns the config otherwise. */
export function validateConfig(config: GPT2Config): GPT2Config {
  for (const key of ["nLayer", "nHead", "nEmbd", "vocabSize", "nPositions"] as const) {
    const value = config[key];
    if (!Number.isInteger(value) || value < 1) throw new UserError(`model config: ${key} must be a positive integer, got ${value}`);
  }
  if (config.nEmbd % config.nHead !== 0) {
    throw new UserError(`model config: nEmbd (${config.nEmbd}) must be divisible by nHead (${config.nHead})`);
  }
  if (!(config.layerNormEps > 0 && config.layerNormEps < 1)) {
    throw new UserError(`model config: layerNormEps must be in (0, 1), got ${config.layerNormEps}`);
  }
  return config;
}

/** Number of trainable parameters (lm_head is tied to wte, so it adds nothing). */
export function parameterCount(c: GPT2Config): number {
  const C = c.nEmbd;
  const perLayer = 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C);
  return c.vocabSize * C + c.nPositions * C + c.nLayer * perLayer + 2 * C;
}

/**
 * Reads an HF GPT-2 `config.json` object. Only the plain GPT-2 block is implemented, so settings that change the
 * architecture (a different MLP width, another activation, per-layer attention scaling) are refused, not ignored.
 */
export function configFromHF(json: unknown, source = "config.json"): GPT2Config {
  if (typeof json !== "object" || json === null) throw new UserError(`${source}: expected a JSON object`);
  const hf = json as Record<string, unknown>;
  const fail = (why: string): never => {
    throw new UserError(`${source}: ${why}`);
  };
  if (hf.model_type !== undefined && hf.model_type !== "gpt2") fail(`model_type "${hf.model_type}" is not gpt2`);
  const int = (key: string): number => {
    const value = hf[key];
    if (typeof value !== "number" || !Number.isInteger(value)) fail(`${key} must be an integer, got ${JSON.stringify(value)}`);
    return value as number;
  };
  const nEmbd = int("n_embd");
  if (hf.n_inner !== undefined && hf.n_inner !== null && hf.n_inner !== 4 * nEmbd) {
    fail(`n_inner ${hf.n_inner} is not supported (only null or 4·n_embd = ${4 * nEmbd})`);
  }
  const activation = hf.activation_function ?? "gelu_new";
  if (activation !== "gelu_new" && activation !== "gelu_pytorch_tanh") {
    fail(`activation_function "${activation}" is not supported (only gelu_new, the tanh approximation)`);
  }
  if (hf.scale_attn_by_inverse_layer_idx === true) fail("scale_attn_by_inverse_layer_idx is not supported");
  if (hf.scale_attn_weights === false) fail("scale_attn_weights=false is not supported");
  const eps = hf.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== "number") fail(`layer_norm_epsilon must be a number, got ${JSON.stringify(eps)}`);
  const config = {
    nLayer: int("n_layer"),
    nHead: int("n_head"),
    nEmbd,
    vocabSize: int("vocab_size"),
    nPositions: hf.n_positions !== undefined ? int("n_positions") : int("n_ctx"),
    layerNormEps: eps as number,
  };
  try {
    return validateConfig(config);
  } catch (err) {
    return fail((err as Error).message);
  }
}

/** The HF `config.json` object for a GPT2LMHeadModel with this shape (dropout 0: these models are trained here). */
export function configToHF(c: GPT2Config, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ["GPT2LMHeadModel"],
    model_type: "gpt2",
    activation_function: "gelu_new",
    n_layer: c.nLayer,
    n_head: c.nHead,
    n_embd: c.nEmbd,
    n_inner: null,
    vocab_size: c.vocabSize,
    n_positions: c.nPositions,
    n_ctx: c.nPositions,
    layer_norm_epsilon: c.layerNormEps,
    attn_pdrop: 0,
    embd_pdrop: 0,
    resid_pdrop: 0,
    initializer_range: 0.02,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    torch_dtype: "float32",
    ...extra,
  };
}
