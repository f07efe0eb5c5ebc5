/**
 * A run's settings, defined once: `RunSpecSchema` validates, types and documents them everywhere —
 * the train command's flags are derived from it (`runSpecFlags`, `runSpecFromFlags`), a grid cell is one (a grid's
 * `selections` and `training` are its parts), POST /v1/runs takes one as its body, `run.json` stores the parsed one
 * (`spec`), and /v1/schema serves it as JSON Schema. A child process gets it as a JSON file (`train --spec FILE`),
 * never as argv to be parsed back.
 */
import * as v from "valibot";
import { Alpha, BatchSize, CheckpointEvery, Epochs, Fraction, GradClip, ItemLimit, KeyTokens, LearningRate, LoraAlpha, LoraDropout, LoraRank, MAX_STEPS, Seed, SequenceTokens, WarmupSteps, WeightDecay } from "../bounds.ts";
import { UserError } from "../errors.ts";
import type { ModelConfig } from "../model/family.ts";
import { DEFAULT_LORA, DEFAULT_LORA_TARGETS, type LoraSettings } from "../model/lora.ts";
import { BATCHINGS } from "../train/batches.ts";
import { PLACEMENTS } from "./placement.ts";
import { RATIONALE_FILTERS, RATIONALE_PARTS, SAMPLE_MODES } from "./rationales.ts";
import { type Selection, SHUFFLE_UNITS } from "./selection.ts";

export const ATTRIBUTIONS = ["idf", "saliency", "random"] as const;
export type AttributionKind = (typeof ATTRIBUTIONS)[number];

// the ranges every client-given number must lie in (src/bounds.ts): one definition for HTTP, grids and the CLI
const Steps = v.pipe(v.number(), v.integer("an integer"), v.minValue(1, "at least 1"), v.maxValue(MAX_STEPS, `at most ${MAX_STEPS}`));
const Path = v.pipe(v.string(), v.minLength(1), v.maxLength(1_000));
const picklist = <T extends readonly [string, ...string[]]>(options: T, what: string) => v.picklist(options, `${what} must be one of: ${options.join(", ")}`);

/** Which rationale tokens the student sees (src/distill/selection.ts); "kind" is the train command's --selection. */
export const SelectionSchema = v.variant(
  "kind",
  [
    v.strictObject({ kind: v.picklist(["full", "random", "unk"]) }),
    v.strictObject({
      kind: v.literal("shuffled"),
      /** What is permuted: tokens (default), words or sentences. */
      unit: v.optional(picklist(SHUFFLE_UNITS, "unit")),
    }),
    v.pipe(
      v.strictObject({
        kind: v.literal("key"),
        /** How many tokens to keep (a rationale shorter than k is kept whole). */
        k: KeyTokens,
        /** Who scores the tokens: idf (model-free, default), saliency (gradient × input of attributionModel) or random (the random-k control). */
        attribution: v.optional(picklist(ATTRIBUTIONS, "attribution")),
        /** The student (run or model folder) whose saliency scores the tokens. */
        attributionModel: v.optional(Path),
      }),
      v.forward(v.check((s) => s.attribution !== "saliency" || s.attributionModel !== undefined, 'attribution "saliency" needs attributionModel'), ["attributionModel"]),
    ),
    v.strictObject({
      kind: v.literal("masked"),
      /** The fraction of tokens replaced by the mask token. */
      p: Fraction,
    }),
  ],
  'selection must be one of: full, shuffled (optional "unit"), random, unk, key (with "k"), masked (with "p")',
);
export type SelectionSpec = v.InferOutput<typeof SelectionSchema>;

/**
 * What makes a big student fit the GPU: LoRA adapters on a frozen base (src/model/lora.ts) and activation
 * checkpointing; part of "training", and the flags train-lm and inspect share with train.
 */
export const TrainingMemorySchema = v.strictObject({
  /** Train rank-r LoRA adapters with the base frozen (PEFT's r; default: full fine-tuning). */
  loraRank: v.optional(LoraRank),
  /** The adapters' update is scaled by loraAlpha / loraRank (PEFT's lora_alpha; default 8). */
  loraAlpha: v.optional(LoraAlpha),
  /** Dropout on the adapters' input (PEFT's lora_dropout; default 0). */
  loraDropout: v.optional(LoraDropout),
  /** Comma-separated HF module names to adapt (PEFT's target_modules; default PEFT's for the family: c_attn, q_proj,v_proj …). */
  loraTargets: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.]+(,[A-Za-z0-9_.]+)*$/, "loraTargets: comma-separated module names"), v.maxLength(1_000))),
  /** Keep only each layer's input and recompute its forward in backward: about one layer of activations instead of all. */
  checkpointActivations: v.optional(v.boolean()),
});
export type TrainingMemorySpec = v.InferOutput<typeof TrainingMemorySchema>;

/** These settings as parseArgs options (--lora-rank …, --checkpoint-activations), for commands whose other flags are their own. */
export function trainingMemoryOptions(): Record<string, { type: "string" | "boolean" }> {
  return Object.fromEntries(
    Object.entries(TrainingMemorySchema.entries).map(([key, schema]) => [kebab(key), { type: (schema as { wrapped?: { type: string } }).wrapped?.type === "boolean" ? "boolean" : "string" }]),
  );
}

/** Parsed flag values → validated settings; an error names the flag. */
export function trainingMemoryFromFlags(values: Record<string, string | boolean | undefined>): TrainingMemorySpec {
  const input: Record<string, unknown> = {};
  for (const key of Object.keys(TrainingMemorySchema.entries)) {
    const raw = values[kebab(key)];
    if (raw === undefined) continue;
    input[key] = key === "loraTargets" || typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(Number(raw)) ? raw : Number(raw);
  }
  const result = v.safeParse(TrainingMemorySchema, input);
  if (result.success) return result.output;
  const first = result.issues[0];
  const where = v.getDotPath(first);
  throw new UserError(`invalid flags: ${where ? `--${kebab(where)}: ` : ""}${first.message}`, 400);
}

/** Optimisation and schedule: what a grid's "training" object holds. */
export const TrainingSchema = v.strictObject({
  batchSize: v.optional(BatchSize),
  lr: v.optional(LearningRate),
  /** Loss weight of the rationale tokens (label tokens weigh 1). */
  alpha: v.optional(Alpha),
  warmupSteps: v.optional(WarmupSteps),
  weightDecay: v.optional(WeightDecay),
  gradClip: v.optional(GradClip),
  /** Longest training sequence in tokens (longer examples lose their end; default: the longest example). */
  maxSeqLength: v.optional(SequenceTokens),
  /** Steps between checkpoints: what an interrupted run loses at most (default: only at the end; grids: 50). */
  checkpointEvery: v.optional(CheckpointEvery),
  /** Evaluate on the dev split every N steps and keep the best weights. */
  devEvery: v.optional(Steps),
  /** Dev items per evaluation (default 200). */
  devLimit: v.optional(ItemLimit),
  /** Stop after N dev evaluations in a row without improvement. */
  patience: v.optional(Steps),
  ...TrainingMemorySchema.entries,
  /**
   * bucketed (default): batches of examples of similar length, each only as long as its longest; padded: a plain
   * shuffle, every batch padded to the longest example of the run (src/train/batches.ts).
   */
  batching: v.optional(picklist(BATCHINGS, "batching")),
});
export type TrainingSpec = v.InferOutput<typeof TrainingSchema>;

/**
 * The LoRA adapters a run trains with the base frozen (src/model/lora.ts), chosen by giving loraRank; the flags
 * --lora-rank, --lora-alpha, --lora-dropout, --lora-targets of both train and train-lm come from here.
 */
export function loraSettingsOf(t: TrainingMemorySpec, config: ModelConfig): LoraSettings | null {
  if (t.loraRank === undefined) {
    const stray = (["loraAlpha", "loraDropout", "loraTargets"] as const).filter((k) => t[k] !== undefined);
    if (stray.length) throw new UserError(`${stray.map((k) => `--${kebab(k)}`).join(", ")} without --lora-rank: give the rank to train LoRA adapters`);
    return null;
  }
  return {
    rank: t.loraRank,
    alpha: t.loraAlpha ?? DEFAULT_LORA.alpha,
    dropout: t.loraDropout ?? DEFAULT_LORA.dropout,
    targets: t.loraTargets ? t.loraTargets.split(",").map((x) => x.trim()) : DEFAULT_LORA_TARGETS[config.family],
  };
}

/** Where a run's rationales come from and which answers train (src/distill/rationales.ts): a run spec's fields, which a grid shares. */
export const RationaleChoiceSchema = v.strictObject({
  /**
   * Where the rationales come from (src/distill/rationales.ts): a teacher model in the rationale store, "palm" (the
   * shipped PaLM-540B ones), "gold" (the dataset's own worked solutions), or a JSON-lines file. Default: gold where
   * the dataset ships them, else palm.
   */
  rationales: v.optional(Path),
  /** agree (default): only answers whose label equals gold; any: every answer. */
  rationaleFilter: v.optional(picklist(RATIONALE_FILTERS, "rationaleFilter")),
  /** Several samples per item: first (default), all (each its own example), majority (self-consistency vote). */
  samples: v.optional(picklist(SAMPLE_MODES, "samples")),
  /** Template version of a store source (default: that teacher's newest). */
  rationaleTemplate: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(200))),
  /** Which part of a stored answer trains: explanation (default), reasoning (a reasoning model's trace), both. */
  rationalePart: v.optional(picklist(RATIONALE_PARTS, "rationalePart")),
});
export type RationaleChoice = v.InferOutput<typeof RationaleChoiceSchema>;

export const RunSpecSchema = v.pipe(
  v.strictObject({
    /** Shown in listings (default: the run folder's name). */
    name: v.optional(v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$/, "name: letters, digits, '.', '_' or '-' (at most 80)"))),
    dataset: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "dataset: lower-case letters, digits, '-' and '_'")),
    /** A from-scratch size (scratch-micro, scratch-tiny, scratch-small, scratch-gpt2 …, src/model/ref.ts), or a Hugging Face model folder / hub id in the HF cache. */
    model: v.optional(Path, "scratch-micro"),
    placement: picklist(PLACEMENTS, "placement"),
    selection: v.optional(SelectionSchema, { kind: "full" }),
    seed: v.optional(Seed, 0),
    epochs: v.optional(Epochs, 1),
    /** Use the first N training items (that have a rationale). */
    limit: v.optional(ItemLimit),
    ...RationaleChoiceSchema.entries,
    /** Train no step: the initial student is the model (the "untrained" baseline row). */
    untrained: v.optional(v.boolean()),
    /** Wrap each prompt in the student's chat template (an instruct model's tokenizer_config.json chat_template). */
    chatTemplate: v.optional(v.boolean()),
    /** The dtype the final model/ is saved in (training is f32 either way). */
    saveDtype: v.optional(picklist(["f32", "bf16", "f16"], "saveDtype")),
    training: v.optional(TrainingSchema, {}),
  }),
  v.forward(v.check((s) => s.placement !== "none" || s.selection.kind === "full", 'placement "none" has no rationale to select from: selection must be "full"'), ["selection"]),
);
export type RunSpec = v.InferOutput<typeof RunSpecSchema>;
export type RunSpecInput = v.InferInput<typeof RunSpecSchema>;

/** The selector the example builder runs: the spec's selection seeded by the run's seed. */
export function selectionOf(spec: RunSpec): Selection {
  const { kind } = spec.selection;
  const s = spec.selection as { k?: number; p?: number; unit?: Selection["unit"] };
  return { kind, seed: spec.seed, ...(s.k === undefined ? {} : { k: s.k }), ...(s.p === undefined ? {} : { p: s.p }), ...(s.unit === undefined ? {} : { unit: s.unit }) };
}

/** The first issue as one line naming where it is ("selection.k: …"); all issues for an HTTP 400. */
export function parseRunSpec(input: unknown, source = "run spec", name: (path: string) => string = (path) => path): RunSpec {
  const result = v.safeParse(RunSpecSchema, input);
  if (result.success) return result.output;
  const first = result.issues[0];
  const where = v.getDotPath(first);
  throw new UserError(`${source}: ${where ? `${name(where)}: ` : ""}${first.message}`, 400, result.issues.map((i) => ({ path: v.getDotPath(i) ?? "", message: i.message })));
}

// ---- the train command's flags, derived from the schema ---------------------------------------------------------

export interface SpecFlag {
  /** --batch-size */
  flag: string;
  /** Where the value goes in a spec: ["training", "batchSize"]; a nested object's "kind" is named by its parent. */
  path: string[];
  type: "string" | "number" | "boolean";
}

type AnySchema = { type: string; wrapped?: AnySchema; pipe?: AnySchema[]; entries?: Record<string, AnySchema>; options?: AnySchema[] };

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function unwrap(schema: AnySchema): AnySchema {
  if (schema.wrapped) return unwrap(schema.wrapped);
  if (schema.type !== "pipe" && schema.pipe) return unwrap(schema.pipe[0]);
  return schema;
}

/** The entries of an object schema, or the union of a variant's options' entries. */
function entriesOf(schema: AnySchema): Record<string, AnySchema> | null {
  const s = unwrap(schema);
  if (s.type === "variant") return Object.assign({}, ...(s.options ?? []).map((o) => entriesOf(o) ?? {}));
  return s.type === "strict_object" || s.type === "object" ? (s.entries ?? null) : null;
}

function flagsOf(entries: Record<string, AnySchema>, parent: string[]): SpecFlag[] {
  const flags = new Map<string, SpecFlag>();
  for (const [key, schema] of Object.entries(entries)) {
    const nested = entriesOf(schema);
    if (nested) {
      for (const f of flagsOf(nested, [...parent, key])) flags.set(f.flag, f);
      continue;
    }
    const type = unwrap(schema).type;
    const name = key === "kind" && parent.length ? parent.at(-1)! : key;
    flags.set(kebab(name), { flag: kebab(name), path: [...parent, key], type: type === "number" ? "number" : type === "boolean" ? "boolean" : "string" });
  }
  return [...flags.values()];
}

/** Every setting of a run as a flag: --dataset, --selection (its kind), --k, --batch-size, --dev-every … */
export const RUN_SPEC_FLAGS: SpecFlag[] = flagsOf(entriesOf(RunSpecSchema as unknown as AnySchema)!, []);

/** The flags in node:util parseArgs form. */
export function parseArgsOptions(): Record<string, { type: "string" | "boolean" }> {
  return Object.fromEntries(RUN_SPEC_FLAGS.map((f) => [f.flag, { type: f.type === "boolean" ? "boolean" : "string" }]));
}

/** Parsed flag values → a validated spec; an error names the flag (--k: …). */
export function runSpecFromFlags(values: Record<string, string | boolean | undefined>): RunSpec {
  const input: Record<string, unknown> = {};
  for (const f of RUN_SPEC_FLAGS) {
    const raw = values[f.flag];
    if (raw === undefined) continue;
    const value = f.type === "number" && typeof raw === "string" && raw.trim() !== "" && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    let at = input;
    for (const key of f.path.slice(0, -1)) at = (at[key] ??= {}) as Record<string, unknown>;
    at[f.path.at(-1)!] = value;
  }
  const byPath = new Map(RUN_SPEC_FLAGS.map((f) => [f.path.join("."), `--${f.flag}`]));
  // a missing "kind" reads best as the flag that sets it
  return parseRunSpec(input, "invalid flags", (path) => byPath.get(path) ?? byPath.get(`${path}.kind`) ?? path);
}
