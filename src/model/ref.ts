/**
 * What `--model` names, in every command: a Hugging Face model folder, or a hub repo id found in the local HF cache
 * (`gpt2`, `openai-community/gpt2`, `org/name`), whose weights and tokenizer are loaded — or, spelled so that it
 * can never be mistaken for a hub id, a from-scratch size: `scratch-micro`, `scratch-tiny`, `scratch-small`,
 * `scratch-gpt2` … A name that is neither fails with one line saying where it looked; nothing silently trains from
 * scratch.
 */
import { UserError } from "../errors.ts";
import { PRESETS, type PresetName } from "./config.ts";
import { resolveModelDir } from "./hf.ts";

export const SCRATCH_PREFIX = "scratch-";

/** Every from-scratch model name, e.g. "scratch-micro". */
export const SCRATCH_MODELS = Object.keys(PRESETS).map((size) => `${SCRATCH_PREFIX}${size}`);

export type ModelRef = { kind: "scratch"; name: string; size: PresetName } | { kind: "pretrained"; name: string; dir: string };

/** The preset size of a from-scratch name ("scratch-micro" → "micro"), or null for anything else. */
export function scratchSize(model: string): PresetName | null {
  if (!model.startsWith(SCRATCH_PREFIX)) return null;
  const size = model.slice(SCRATCH_PREFIX.length);
  return Object.hasOwn(PRESETS, size) ? (size as PresetName) : null;
}

/** Resolves `--model`; the error lists the from-scratch names beside where the HF cache was searched. */
export function resolveModel(model: string, env: Record<string, string | undefined> = process.env): ModelRef {
  const size = scratchSize(model);
  if (size) return { kind: "scratch", name: model, size };
  if (model.startsWith(SCRATCH_PREFIX)) {
    throw new UserError(`unknown from-scratch size "${model}" (known: ${SCRATCH_MODELS.join(", ")})`, 404);
  }
  try {
    return { kind: "pretrained", name: model, dir: resolveModelDir(model, env) };
  } catch (err) {
    throw new UserError(`--model ${(err as Error).message}; to train from scratch, name a size: ${SCRATCH_MODELS.join(", ")}`, 404);
  }
}
