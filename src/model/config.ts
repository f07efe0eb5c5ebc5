/**
 * Model configs: named GPT-2 sizes for students trained from scratch, and the Hugging Face `config.json` form of
 * every family (read and write in family.ts), so a model folder written here loads in `transformers` and a
 * checkpoint from the hub loads here.
 */
import { UserError } from "../errors.ts";
import { configFromHF, configToHF, GPT2_ARCH, type ModelConfig, parameterCount, validateConfig } from "./family.ts";

export { configFromHF, configToHF, parameterCount, validateConfig };
export type { ModelConfig };

/** The sizes of a GPT-2 (the rest follows: MHA, 4× MLP, tied head). */
export interface GPT2Sizes {
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
} satisfies Record<string, GPT2Sizes>;

export type PresetName = keyof typeof PRESETS;

/** A GPT-2 of these sizes (validated). */
export function gpt2Config(s: GPT2Sizes): ModelConfig {
  if (!Number.isInteger(s.nEmbd / s.nHead)) throw new UserError(`model config: nEmbd (${s.nEmbd}) must be divisible by nHead (${s.nHead})`);
  return validateConfig({
    family: "gpt2", arch: GPT2_ARCH, nLayer: s.nLayer, nHead: s.nHead, nKVHead: s.nHead, headDim: s.nEmbd / s.nHead, nEmbd: s.nEmbd,
    intermediateSize: 4 * s.nEmbd, vocabSize: s.vocabSize, nPositions: s.nPositions, layerNormEps: s.layerNormEps,
  });
}

/** A preset by name, with optional overrides (e.g. the vocabulary size of the tokenizer actually used). */
export function presetConfig(name: string, overrides: Partial<GPT2Sizes> = {}): ModelConfig {
  if (!Object.hasOwn(PRESETS, name)) {
    throw new UserError(`unknown model size "${name}" (known: ${Object.keys(PRESETS).join(", ")})`);
  }
  return gpt2Config({ ...PRESETS[name as PresetName], ...overrides });
}
