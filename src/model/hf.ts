/**
 * Hugging Face model folders (any family of family.ts): config.json + safetensors weights (one file or shards, F32,
 * F16 or BF16 — hf-weights.ts), loaded into (and saved from) the flat parameter layout of params.ts, and found in
 * the local HF hub cache by repo id. Only local files are read: nothing is downloaded.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { configFromHF, configToHF, type ModelConfig } from "./config.ts";
import { canonicalTensorName, isIgnoredTensor } from "./family.ts";
import { type ParamLayout, paramLayout, tensorView } from "./params.ts";
import { type NamedTensor, readWeights, type SaveWeightsOptions, storedDtype, WEIGHTS_FILE, writeWeights } from "./hf-weights.ts";
import { type Dtype, torchDtypeName } from "./safetensors.ts";

export interface LoadedModel {
  config: ModelConfig;
  layout: ParamLayout;
  /** Flat parameters in `layout`. */
  params: Float32Array;
  /** The dtype the checkpoint was stored in (training is float32 whatever it was). */
  dtype: Dtype;
}

export const CONFIG_FILE = "config.json";
export { WEIGHTS_FILE };

export async function readConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, CONFIG_FILE);
  if (!existsSync(path)) throw new UserError(`${dir}: no ${CONFIG_FILE} (not a Hugging Face model folder?)`, 404);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new UserError(`${path}: invalid JSON (${(err as Error).message})`, 422);
  }
  return configFromHF(json, path);
}

/**
 * Loads a model folder of any supported family into the flat layout: every tensor of familyTensors(config) must be
 * there with its shape; a stored lm_head.weight of a tied model must equal the embedding.
 */
export async function loadHFModel(dir: string): Promise<LoadedModel> {
  const config = await readConfig(dir);
  const layout = paramLayout(config);
  const weights = await readWeights(dir);
  const found = new Map<string, NamedTensor>();
  for (const [name, entry] of weights) {
    if (!isIgnoredTensor(name)) found.set(canonicalTensorName(config, name), entry);
  }
  const params = new Float32Array(layout.size);
  for (const spec of layout.tensors) {
    const entry = found.get(spec.name);
    if (!entry) throw new UserError(`${dir}: missing tensor ${spec.name}`, 422);
    expectShape(entry.file, spec.name, spec.shape, entry.shape);
    tensorView(params, spec).set(entry.data);
    found.delete(spec.name);
  }
  const lmHead = config.arch.tiedHead ? found.get("lm_head.weight") : undefined;
  if (lmHead) {
    found.delete("lm_head.weight");
    expectShape(lmHead.file, "lm_head.weight", layout.wte.shape, lmHead.shape);
    const wte = tensorView(params, layout.wte);
    if (lmHead.data.some((x, i) => x !== wte[i])) {
      throw new UserError(`${lmHead.file}: lm_head.weight differs from ${layout.wte.name} though the config ties them (tie_word_embeddings)`, 422);
    }
  }
  if (found.size > 0) {
    const [name, entry] = [...found][0];
    throw new UserError(`${entry.file}: unexpected tensor ${name} for a ${config.family} of this config`, 422);
  }
  return { config, layout, params, dtype: storedDtype(weights) };
}

function expectShape(file: string, name: string, expected: number[], found: number[]): void {
  if (expected.length !== found.length || expected.some((d, i) => d !== found[i])) {
    throw new UserError(`${file}: tensor ${name} has shape [${found.join(", ")}], expected [${expected.join(", ")}]`, 422);
  }
}

/**
 * Writes config.json + model.safetensors (or shards with their index; F32 unless `options.dtype`) in the family's
 * HF layout, which `transformers` from_pretrained loads.
 */
export async function saveHFModel(
  dir: string,
  model: { config: ModelConfig; params: Float32Array },
  extraConfig: Record<string, unknown> = {},
  options: SaveWeightsOptions = {},
): Promise<void> {
  const layout = paramLayout(model.config);
  if (model.params.length !== layout.size) throw new Error(`params has ${model.params.length} floats, layout needs ${layout.size}`);
  const byHFOrder = [...layout.tensors].sort((a, b) => a.name.localeCompare(b.name));
  const tensors = byHFOrder.map((spec) => ({ name: spec.name, shape: spec.shape, data: tensorView(model.params, spec) }));
  await writeWeights(dir, tensors, options);
  const torchDtype = torchDtypeName(options.dtype ?? "F32");
  await Bun.write(join(dir, CONFIG_FILE), JSON.stringify(configToHF(model.config, { ...extraConfig, torch_dtype: torchDtype }), null, 2) + "\n");
}

/** The hub cache folder, as huggingface_hub computes it: HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub. */
export function hubCacheDir(env: Record<string, string | undefined> = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  const hfHome = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return join(hfHome, "hub");
}

/** Repo ids GPT-2 checkpoints are known under (the OpenAI models moved to "openai-community/"). */
function repoAliases(repoId: string): string[] {
  const bare = repoId.startsWith("openai-community/") ? repoId.slice("openai-community/".length) : repoId;
  return /^gpt2(-medium|-large|-xl)?$/.test(bare) ? [bare, `openai-community/${bare}`] : [repoId];
}

/**
 * A model folder from a path or a hub repo id ("gpt2", "org/name"): an existing directory is used as is; otherwise
 * the snapshot that refs/main names in the hub cache, or the newest snapshot if there is no ref.
 */
export function resolveModelDir(nameOrPath: string, env: Record<string, string | undefined> = process.env): string {
  if (existsSync(nameOrPath) && statSync(nameOrPath).isDirectory()) return nameOrPath;
  const cache = hubCacheDir(env);
  const snapshot = findInHubCache(nameOrPath, cache);
  if (snapshot) return snapshot;
  const looked = hubCachePlaces(nameOrPath, cache).map((dir) => join(dir, "snapshots"));
  throw new UserError(`"${nameOrPath}" is neither a model folder nor in the Hugging Face cache (looked in ${looked.join(", ")}; set HF_HUB_CACHE or HF_HOME)`, 404);
}

/** The repo folders a hub id may live in under `cache` (GPT-2 ids under both their old and new names). */
function hubCachePlaces(repoId: string, cache: string): string[] {
  return repoAliases(repoId).map((alias) => join(cache, `models--${alias.replaceAll("/", "--")}`));
}

/** The snapshot folder of a hub repo id in the cache at `cache` (refs/main's, else the newest), or undefined. */
export function findInHubCache(repoId: string, cache: string): string | undefined {
  for (const repoDir of hubCachePlaces(repoId, cache)) {
    const snapshot = pickSnapshot(repoDir);
    if (snapshot) return snapshot;
  }
  return undefined;
}

function pickSnapshot(repoDir: string): string | undefined {
  const snapshots = join(repoDir, "snapshots");
  if (!existsSync(snapshots)) return undefined;
  const ref = join(repoDir, "refs", "main");
  if (existsSync(ref)) {
    const named = join(snapshots, readFileSync(ref, "utf8").trim());
    if (existsSync(named)) return named;
  }
  const revisions = readdirSync(snapshots)
    .map((rev) => join(snapshots, rev))
    .filter((path) => statSync(path).isDirectory())
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  return revisions[0];
}

/** resolveModelDir + loadHFModel. */
export async function loadPretrained(nameOrPath: string, env?: Record<string, string | undefined>): Promise<LoadedModel & { dir: string }> {
  const dir = resolveModelDir(nameOrPath, env);
  return { dir, ...(await loadHFModel(dir)) };
}
