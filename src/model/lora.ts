/**
 * LoRA (Hu et al. 2021) as PEFT does it, for every family: a frozen linear layer y = x·W (+ b) gains
 * y += (alpha/r)·dropout(x)·Aᵀ·Bᵀ with A [r, in] (Kaiming-uniform, as PEFT's init_lora_weights=True) and B [out, r]
 * (zeros, so training starts from the base model exactly). Only A and B are trained.
 *
 * Our graph fuses q|k|v and gate|up into one matrix (params.ts) where HF has separate modules; PEFT's target
 * modules name HF modules (q_proj, v_proj, c_attn, fc1 …), so each adapter is one HF module mapped onto a row range
 * of a fused slot: q_proj is rows [0, Q) of qkv.weight, v_proj rows [Q+KV, W), up_proj rows [I, 2I) of fc.weight.
 * (For GPT-2's Conv1D [in, out] weights the "rows" are output columns; the adapter maths is the same.)
 *
 * The adapters live in their own flat array (LoraLayout: every A and B at a 64-float boundary, like params.ts), with
 * their own gradients and AdamW moments, so a frozen base needs no gradient or optimizer memory at all.
 *
 * Files: the PEFT layout — adapter_config.json + adapter_model.safetensors with tensors named
 * base_model.model.<HF module>.lora_A.weight / .lora_B.weight — which PEFT's PeftModel.from_pretrained loads, and
 * `mergeLora` folds W + (alpha/r)·B·A into a plain parameter array for a full HF folder.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { FamilyName, LayerRole, ModelConfig } from "./family.ts";
import { familyTensors } from "./family.ts";
import { type LoadedModel, loadHFModel, resolveModelDir } from "./hf.ts";
import { alignUp, paramLayout } from "./params.ts";
import { Rng } from "./rng.ts";
import { type Dtype, readSafetensorsFile, toFloat32, writeSafetensorsFile } from "./safetensors.ts";

export interface LoraSettings {
  /** Rank r of A [r, in] and B [out, r]. */
  rank: number;
  /** The update is scaled by alpha / r. */
  alpha: number;
  /** Dropout probability on the adapter's input (the base path sees x unchanged), as PEFT's lora_dropout. */
  dropout: number;
  /** PEFT target modules: HF module names, matched as PEFT matches a list (the name, or a suffix after a "."). */
  targets: string[];
}

/** PEFT's defaults (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING) for our families. */
export const DEFAULT_LORA_TARGETS: Record<FamilyName, string[]> = {
  gpt2: ["c_attn"],
  llama: ["q_proj", "v_proj"],
  qwen2: ["q_proj", "v_proj"],
  qwen3: ["q_proj", "v_proj"],
  gemma: ["q_proj", "v_proj"],
  gemma2: ["q_proj", "v_proj"],
  phi: ["q_proj", "v_proj", "fc1", "fc2"],
};

/** PEFT LoraConfig's defaults (r = 8, lora_alpha = 8, lora_dropout = 0). */
export const DEFAULT_LORA = { rank: 8, alpha: 8, dropout: 0 } as const;

/** The matmul roles an adapter can sit on. */
export const LORA_ROLES = ["qkv.weight", "o.weight", "fc.weight", "proj.weight"] as const satisfies readonly LayerRole[];
export type LoraRole = (typeof LORA_ROLES)[number];

/** An adaptable module of the model: one HF matmul weight, with where it sits in our fused slots. */
interface ModuleSlot {
  /** HF module path, e.g. "model.layers.0.self_attn.q_proj". */
  module: string;
  layer: number;
  role: LoraRole;
  /** The output range [rowStart, rowStart + rows) of the fused product this module is. */
  rowStart: number;
  rows: number;
  /** Input width (A's columns). */
  inDim: number;
}

export interface AdapterSpec extends ModuleSlot {
  /** Element offsets of A [rank, inDim] and B [rows, rank] in the adapter array. */
  aOffset: number;
  bOffset: number;
  /** Position in the layout (dropout masks differ per adapter, as PEFT's one dropout module per adapter). */
  index: number;
}

export interface LoraLayout {
  settings: LoraSettings;
  rank: number;
  /** alpha / r. */
  scale: number;
  adapters: AdapterSpec[];
  /** Adapters by layer, then role (several per role: q_proj and v_proj both sit on qkv.weight). */
  byLayer: Partial<Record<LoraRole, AdapterSpec[]>>[];
  /** Total floats (a multiple of PARAM_ALIGNMENT). */
  size: number;
  /** Widest adapter output and input (scratch sizes). */
  maxRows: number;
  maxIn: number;
}

/** Every HF matmul module of the blocks, in layer and role order (the modules PEFT could adapt in our graph). */
export function adaptableModules(config: ModelConfig): ModuleSlot[] {
  const out: ModuleSlot[] = [];
  const conv1d = config.arch.weightLayout === "conv1d";
  for (const slot of familyTensors(config)) {
    if (slot.layer === null || !(LORA_ROLES as readonly string[]).includes(slot.role)) continue;
    let rowStart = 0;
    for (const part of slot.parts) {
      const [d0, d1] = part.shape;
      const rows = conv1d ? d1 : d0;
      out.push({ module: part.name.replace(/\.weight$/, ""), layer: slot.layer, role: slot.role as LoraRole, rowStart, rows, inDim: conv1d ? d0 : d1 });
      rowStart += rows;
    }
  }
  return out;
}

/** PEFT's match of a list of target modules: the module's full name, or a suffix of it after a ".". */
export function matchesTarget(module: string, target: string): boolean {
  return module === target || module.endsWith(`.${target}`);
}

export function validateLoraSettings(s: LoraSettings): void {
  if (!Number.isInteger(s.rank) || s.rank < 1) throw new UserError(`LoRA rank must be a positive integer, got ${s.rank}`);
  if (!(s.alpha > 0) || !Number.isFinite(s.alpha)) throw new UserError(`LoRA alpha must be a positive number, got ${s.alpha}`);
  if (!(s.dropout >= 0 && s.dropout < 1)) throw new UserError(`LoRA dropout must be in [0, 1), got ${s.dropout}`);
  if (s.targets.length === 0) throw new UserError("LoRA needs at least one target module");
}

/**
 * The adapters of `settings` on this model, in one flat layout. A target that matches no adaptable module is refused
 * naming the ones there are (as PEFT refuses it); `modules` restricts to exactly these (loading a saved adapter).
 */
export function loraLayout(config: ModelConfig, settings: LoraSettings, modules?: Set<string>): LoraLayout {
  validateLoraSettings(settings);
  const all = adaptableModules(config);
  for (const target of settings.targets) {
    if (!all.some((m) => matchesTarget(m.module, target))) {
      const names = [...new Set(all.map((m) => m.module.split(".").at(-1)))].join(", ");
      throw new UserError(`LoRA target module "${target}" is not a linear module of this ${config.family} model (its modules: ${names})`);
    }
  }
  const chosen = all.filter((m) => (modules ? modules.has(m.module) : settings.targets.some((t) => matchesTarget(m.module, t))));
  const r = settings.rank;
  let offset = 0;
  const adapters: AdapterSpec[] = chosen.map((m, index) => {
    const aOffset = offset;
    offset = alignUp(aOffset + r * m.inDim);
    const bOffset = offset;
    offset = alignUp(bOffset + m.rows * r);
    return { ...m, aOffset, bOffset, index };
  });
  const byLayer = Array.from({ length: config.nLayer }, () => ({}) as Partial<Record<LoraRole, AdapterSpec[]>>);
  for (const a of adapters) (byLayer[a.layer][a.role] ??= []).push(a);
  return {
    settings,
    rank: r,
    scale: settings.alpha / r,
    adapters,
    byLayer,
    size: offset,
    maxRows: Math.max(0, ...adapters.map((a) => a.rows)),
    maxIn: Math.max(0, ...adapters.map((a) => a.inDim)),
  };
}

/** Trainable adapter parameters (padding excluded). */
export function loraParameterCount(layout: LoraLayout): number {
  return layout.adapters.reduce((s, a) => s + layout.rank * (a.inDim + a.rows), 0);
}

/** PEFT's initialisation: A ~ Kaiming-uniform(a=√5), i.e. U(−1/√in, 1/√in); B = 0. Seeded. */
export function initLora(layout: LoraLayout, seed: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(layout.size);
  for (const a of layout.adapters) {
    const bound = 1 / Math.sqrt(a.inDim);
    for (let i = 0; i < layout.rank * a.inDim; i++) out[a.aOffset + i] = (2 * rng.uniform() - 1) * bound;
  }
  return out;
}

/** A's and B's elements of one adapter as views into the flat array. */
export function adapterViews<A extends Float32Array | Float64Array>(flat: A, layout: LoraLayout, a: AdapterSpec): { A: A; B: A } {
  return {
    A: flat.subarray(a.aOffset, a.aOffset + layout.rank * a.inDim) as A,
    B: flat.subarray(a.bOffset, a.bOffset + a.rows * layout.rank) as A,
  };
}

/**
 * Base parameters with every adapter folded in: W += (alpha/r)·B·A on the adapter's rows (nn.Linear [out, in]) or
 * output columns (Conv1D [in, out]), summed in float64. The result is an ordinary model of the same config.
 */
export function mergeLora(config: ModelConfig, params: Float32Array, layout: LoraLayout, adapters: Float32Array): Float32Array {
  const base = paramLayout(config);
  const merged = Float32Array.from(params);
  const conv1d = config.arch.weightLayout === "conv1d";
  const r = layout.rank;
  for (const a of layout.adapters) {
    const slot = base.layers[a.layer][a.role]!;
    const { A, B } = adapterViews(adapters, layout, a);
    const outDim = conv1d ? slot.shape[1] : slot.shape[0];
    for (let i = 0; i < a.rows; i++) {
      for (let j = 0; j < a.inDim; j++) {
        let sum = 0;
        for (let k = 0; k < r; k++) sum += B[i * r + k] * A[k * a.inDim + j];
        const row = a.rowStart + i;
        const at = conv1d ? j * outDim + row : row * a.inDim + j;
        merged[slot.offset + at] = merged[slot.offset + at] + layout.scale * sum;
      }
    }
  }
  return merged;
}

/**
 * Floats of one range of the frozen base's gradient sink (DecoderModel): the norm kernels always write their weight
 * (and bias) gradients, which a frozen base discards there — the widest one-dimensional tensor they write.
 */
export function frozenSinkFloats(config: ModelConfig): number {
  return alignUp(Math.max(config.nEmbd, config.headDim));
}

// ---- the PEFT files ----

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
const PEFT_PREFIX = "base_model.model.";

export function peftTensorName(module: string, which: "A" | "B"): string {
  return `${PEFT_PREFIX}${module}.lora_${which}.weight`;
}

/** adapter_config.json as PEFT (0.10+) writes it for a LoraConfig with these settings. */
export function peftConfig(config: ModelConfig, settings: LoraSettings, baseModel: string | null): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: config.arch.weightLayout === "conv1d",
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: null,
    loftq_config: {},
    lora_alpha: settings.alpha,
    lora_dropout: settings.dropout,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    peft_type: "LORA",
    r: settings.rank,
    rank_pattern: {},
    revision: null,
    target_modules: [...settings.targets],
    task_type: "CAUSAL_LM",
    use_dora: false,
    use_rslora: false,
  };
}

/** Writes adapter_config.json + adapter_model.safetensors (F32 unless `dtype`). */
export async function saveLoraAdapter(dir: string, config: ModelConfig, layout: LoraLayout, adapters: Float32Array, options: { baseModel?: string | null; dtype?: Dtype } = {}): Promise<void> {
  if (adapters.length !== layout.size) throw new Error(`adapter array has ${adapters.length} floats, layout needs ${layout.size}`);
  mkdirSync(dir, { recursive: true });
  const tensors = layout.adapters.flatMap((a) => {
    const { A, B } = adapterViews(adapters, layout, a);
    return [
      { name: peftTensorName(a.module, "A"), shape: [layout.rank, a.inDim], data: A, dtype: options.dtype },
      { name: peftTensorName(a.module, "B"), shape: [a.rows, layout.rank], data: B, dtype: options.dtype },
    ];
  });
  await writeSafetensorsFile(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
  writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(peftConfig(config, layout.settings, options.baseModel ?? null), null, 2) + "\n");
}

export interface LoadedLora {
  layout: LoraLayout;
  adapters: Float32Array;
}

/** True when `dir` holds a PEFT adapter (adapter_config.json). */
export function isLoraAdapterDir(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG_FILE));
}

/**
 * Reads a PEFT LoRA adapter for a model of `config`: every lora_A/lora_B pair must name one of the model's linear
 * modules with the shapes r and the module imply. What the graph does not implement (DoRA, rsLoRA, per-module ranks,
 * trained biases, extra saved modules) is refused naming it.
 */
export async function loadLoraAdapter(dir: string, config: ModelConfig): Promise<LoadedLora> {
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  if (!existsSync(configPath)) throw new UserError(`${dir}: no ${ADAPTER_CONFIG_FILE} (not a PEFT adapter folder)`, 404);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(configPath, "utf8"));
  } catch (err) {
    throw new UserError(`${configPath}: invalid JSON (${(err as Error).message})`, 422);
  }
  const fail = (why: string): never => {
    throw new UserError(`${configPath}: ${why}`, 422);
  };
  if (json.peft_type !== "LORA") fail(`peft_type ${JSON.stringify(json.peft_type)} is not supported (only LORA)`);
  if (json.use_dora === true) fail("use_dora = true (DoRA) is not supported");
  if (json.use_rslora === true) fail("use_rslora = true (rank-stabilised scaling) is not supported");
  if ((json.bias ?? "none") !== "none") fail(`bias = ${JSON.stringify(json.bias)} is not supported (only "none")`);
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    const v = json[key];
    if (v && typeof v === "object" && Object.keys(v).length > 0) fail(`${key} (per-module ranks or alphas) is not supported`);
  }
  if (json.modules_to_save !== undefined && json.modules_to_save !== null && !(Array.isArray(json.modules_to_save) && json.modules_to_save.length === 0)) {
    fail("modules_to_save is not supported");
  }
  const rank = json.r;
  const alpha = json.lora_alpha ?? rank;
  if (typeof rank !== "number" || typeof alpha !== "number") fail("r and lora_alpha must be numbers");
  const dropout = typeof json.lora_dropout === "number" ? json.lora_dropout : 0;

  const file = await readSafetensorsFile(join(dir, ADAPTER_WEIGHTS_FILE));
  const modules = new Map<string, { A?: Float32Array; B?: Float32Array; shapeA?: number[]; shapeB?: number[] }>();
  for (const [name, entry] of file.tensors) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/.exec(name);
    if (!m) throw new UserError(`${dir}/${ADAPTER_WEIGHTS_FILE}: unexpected tensor ${name} (only lora_A/lora_B weights are read)`, 422);
    const slot = modules.get(m[1]) ?? {};
    slot[m[2] as "A" | "B"] = toFloat32(entry);
    slot[m[2] === "A" ? "shapeA" : "shapeB"] = entry.shape;
    modules.set(m[1], slot);
  }
  const known = new Set(adaptableModules(config).map((m) => m.module));
  for (const name of modules.keys()) {
    if (!known.has(name)) throw new UserError(`${dir}: adapter module ${name} is not a linear module of this ${config.family} model`, 422);
  }
  const targets = Array.isArray(json.target_modules) ? (json.target_modules as string[]) : [...new Set([...modules.keys()].map((m) => m.split(".").at(-1)!))];
  const settings: LoraSettings = { rank: rank as number, alpha: alpha as number, dropout, targets };
  const layout = loraLayout(config, settings, new Set(modules.keys()));
  const adapters = new Float32Array(layout.size);
  for (const a of layout.adapters) {
    const found = modules.get(a.module)!;
    const expectShape = (which: "A" | "B", want: number[], got?: number[]) => {
      if (!got || got.length !== 2 || got[0] !== want[0] || got[1] !== want[1]) {
        throw new UserError(`${dir}: ${peftTensorName(a.module, which)} has shape [${got?.join(", ") ?? "missing"}], expected [${want.join(", ")}]`, 422);
      }
    };
    expectShape("A", [layout.rank, a.inDim], found.shapeA);
    expectShape("B", [a.rows, layout.rank], found.shapeB);
    const views = adapterViews(adapters, layout, a);
    views.A.set(found.A!);
    views.B.set(found.B!);
  }
  return { layout, adapters };
}

// ---- dropout masks (the same hash as shaders/lora.wgsl, so the float64 reference sees the GPU's masks) ----

/** PCG hash of a u32 (Jarzynski & Olano 2020), as shaders/lora.wgsl computes it. */
export function pcgHash(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The mask key of one adapter in one forward pass: a step's seed mixed with the adapter's index. */
export function dropoutKey(seed: number, adapterIndex: number): number {
  return pcgHash((seed ^ pcgHash(adapterIndex + 1)) >>> 0);
}

/** Whether element i of the adapter's input survives dropout p under `key` (the GPU compares in f32). */
export function dropoutKeep(key: number, i: number, p: number): boolean {
  return (pcgHash((i ^ key) >>> 0) >>> 8) / 16777216 >= Math.fround(p);
}

/**
 * A PEFT adapter folder as a whole model: its base (`base`, else adapter_config.json's base_model_name_or_path: a
 * folder or a hub id in the local cache) with the adapter merged in.
 */
export async function loadAdaptedModel(adapterDir: string, base?: string): Promise<LoadedModel & { baseDir: string; lora: LoadedLora }> {
  const json = JSON.parse(readFileSync(join(adapterDir, ADAPTER_CONFIG_FILE), "utf8")) as { base_model_name_or_path?: unknown };
  const baseRef = base ?? json.base_model_name_or_path;
  if (typeof baseRef !== "string" || baseRef === "") {
    throw new UserError(`${adapterDir}: ${ADAPTER_CONFIG_FILE} names no base model (base_model_name_or_path); give the base model`, 422);
  }
  const baseDir = resolveModelDir(baseRef);
  const loaded = await loadHFModel(baseDir);
  const lora = await loadLoraAdapter(adapterDir, loaded.config);
  return { ...loaded, params: mergeLora(loaded.config, loaded.params, lora.layout, lora.adapters), baseDir, lora };
}
