/**
 * One distillation run, end to end: training items and their teacher rationales → examples under one experimental
 * condition (placement × selection × α) → a student (Hugging Face weights, or a seeded from-scratch GPT-2 sized to the
 * tokenizer and the longest example) → `runTraining` into the run folder, with the run registered in SQLite and every
 * setting written to run.json, which evaluation reads back (placement, template, budget).
 */
import type { Database } from "bun:sqlite";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadSplit } from "../data/registry.ts";
import type { Item } from "../data/types.ts";
import { UserError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Kernels } from "../gpu/kernels/index.ts";
import { type ModelConfig, PRESETS, presetConfig } from "../model/config.ts";
import { loadPretrained } from "../model/hf.ts";
import { type ModelRef, resolveModel } from "../model/ref.ts";
import { MAX_EPOCHS, MAX_STEPS } from "../bounds.ts";
import { initParams } from "../model/init.ts";
import { paramLayout } from "../model/params.ts";
import { saveModelTokenizer } from "../model/hf-tokenizer.ts";
import { assertTrainingFits } from "../model/memory.ts";
import type { Dtype } from "../model/safetensors.ts";
import type { TokenCodec } from "./codec.ts";
import { openRunStore } from "../store/runs.ts";
import { SequenceSource } from "../train/batches.ts";
import { readMetrics, type StepMetrics } from "../train/metrics.ts";
import { runTraining } from "../train/run.ts";
import { DEFAULT_OPTIMIZER, type OptimizerOptions } from "../train/trainer.ts";
import { type Attribution, datasetIdfAttribution, documentFrequencies, idfOverlapAttribution } from "./attribution.ts";
import { buildExample, type DistillExample, toSequence } from "./example.ts";
import { DEFAULT_TEMPLATE, type Placement, PLACEMENTS, type Template } from "./placement.ts";
import { checkFraction, type Selection, SELECTIONS } from "./selection.ts";
import {
  type ChosenExample,
  chooseAnswers,
  describeDrops,
  emptyDrops,
  openRationaleSource,
  RATIONALE_FILTERS,
  type RationaleFilter,
  RATIONALE_PARTS,
  type RationalePart,
  type RationaleReport,
  type RationaleSource,
  SAMPLE_MODES,
  type SampleMode,
} from "./rationales.ts";
import { saliencyAttribution } from "./saliency.ts";
import { type LoadedCodec, loadCodec } from "./tokenizer.ts";
import { DEFAULT_WEIGHTS, type LossWeights } from "./weights.ts";

export const ATTRIBUTIONS = ["idf", "saliency"] as const;
export type AttributionKind = (typeof ATTRIBUTIONS)[number];

export interface DistillSpec {
  dataset: string;
  placement: Placement;
  selection: Selection;
  /** Loss weight of the rationale tokens (label tokens weigh 1). */
  alpha?: number;
  /** A Hugging Face model folder or hub id in the local HF cache, or a from-scratch size (scratch-micro …, src/model/ref.ts). */
  model: string;
  epochs: number;
  /** Use the first N training items (that have a rationale). */
  limit?: number;
  batchSize?: number;
  optimizer?: Partial<OptimizerOptions>;
  seed: number;
  outDir: string;
  name?: string;
  /** A teacher model in the rationale store, "palm" (the shipped PaLM rationales, default) or a JSON-lines file (src/distill/rationales.ts). */
  rationales?: string;
  /** Template version of a store source (default: that teacher's newest). */
  rationaleTemplate?: string;
  /** Which answers train: those agreeing with gold (default) or any. */
  rationaleFilter?: RationaleFilter;
  /** With several samples per item: the first (default), all agreeing, or a self-consistency vote. */
  samples?: SampleMode;
  /** Which part of a stored answer is the rationale: explanation (default), reasoning, or both. */
  rationalePart?: RationalePart;
  /** Scorer of the "key" selection: the model-free baseline (default) or gradient×input of a trained student. */
  attribution?: AttributionKind;
  attributionModel?: string;
  /** Longest training sequence; longer examples lose their end (default: the longest example, within n_positions). */
  maxLength?: number;
  checkpointEvery?: number;
  resume?: boolean;
  /** Wrap each prompt in the student's chat template (an instruct model's tokenizer_config.json chat_template). */
  chatTemplate?: boolean;
  /** The dtype the final model/ is saved in (default F32). */
  saveDtype?: Dtype;
}

export interface DistillOptions {
  /** A database path or an open database (default: the project's database file). */
  db?: Database | string;
  gpu?: Gpu;
  kernels?: Kernels;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Stop after this many steps of this invocation (tests of resumed runs). */
  stopAfter?: number;
}

export interface DistillResult {
  runId: string;
  runDir: string;
  modelDir: string;
  steps: number;
  finalLoss: number;
  examples: number;
  metrics: StepMetrics[];
}

/** Everything a run was asked for and derived, as written to run.json (and stored as the run's config). */
export interface RunSettings {
  id: string;
  name: string;
  dataset: string;
  placement: Placement;
  selection: Selection;
  weights: LossWeights;
  template: Template;
  model: string;
  modelConfig: ModelConfig;
  tokenizer: string;
  /** What --rationales said (a teacher, "palm", or the file's path). */
  rationales: string;
  /** Where the rationales came from, how they were chosen, and how many items were kept or dropped and why. */
  rationaleSource: RationaleReport;
  attribution: { kind: AttributionKind; model?: string } | null;
  epochs: number;
  limit: number | null;
  batchSize: number;
  seqLength: number;
  steps: number;
  optimizer: OptimizerOptions;
  seed: number;
  examples: number;
  skippedNoRationale: number;
  truncated: number;
  /** Longest target (tokens after the prompt): the generation budget for placement "before". */
  longestTarget: number;
  /** Prompts were wrapped in the chat template (evaluation wraps them the same way). */
  chatTemplate?: boolean;
}

export const RUN_FILE = "run.json";

/** Checks what the CLI and the HTTP API accept, one readable error each. */
export function validateSpec(spec: DistillSpec): void {
  if (!(PLACEMENTS as readonly string[]).includes(spec.placement)) {
    throw new UserError(`unknown placement "${spec.placement}" (valid: ${PLACEMENTS.join(", ")})`);
  }
  const { kind, k, p } = spec.selection;
  if (!(SELECTIONS as readonly string[]).includes(kind)) throw new UserError(`unknown selection "${kind}" (valid: ${SELECTIONS.join(", ")})`);
  if (spec.placement === "none" && kind !== "full") throw new UserError(`selection "${kind}" needs a rationale: placement "none" has none`);
  if (kind === "key" && !(Number.isInteger(k) && k! >= 1)) throw new UserError(`selection "key" needs --k, a positive integer`);
  if (kind === "masked") checkFraction(p ?? Number.NaN);
  if (spec.rationaleFilter !== undefined && !(RATIONALE_FILTERS as readonly string[]).includes(spec.rationaleFilter)) {
    throw new UserError(`unknown --rationale-filter "${spec.rationaleFilter}" (valid: ${RATIONALE_FILTERS.join(", ")})`);
  }
  if (spec.rationalePart !== undefined && !(RATIONALE_PARTS as readonly string[]).includes(spec.rationalePart)) {
    throw new UserError(`unknown --rationale-part "${spec.rationalePart}" (valid: ${RATIONALE_PARTS.join(", ")})`);
  }
  if (spec.samples !== undefined && !(SAMPLE_MODES as readonly string[]).includes(spec.samples)) {
    throw new UserError(`unknown --samples "${spec.samples}" (valid: ${SAMPLE_MODES.join(", ")})`);
  }
  if (spec.alpha !== undefined && !(Number.isFinite(spec.alpha) && spec.alpha >= 0)) throw new UserError(`--alpha must be a number >= 0, got ${spec.alpha}`);
  if (!(Number.isFinite(spec.epochs) && spec.epochs > 0 && spec.epochs <= MAX_EPOCHS)) {
    throw new UserError(`--epochs must be > 0 and at most ${MAX_EPOCHS}, got ${spec.epochs}`);
  }
  if (spec.limit !== undefined && !(Number.isInteger(spec.limit) && spec.limit >= 1)) throw new UserError(`--limit must be a positive integer, got ${spec.limit}`);
  if (spec.batchSize !== undefined && !(Number.isInteger(spec.batchSize) && spec.batchSize >= 1)) {
    throw new UserError(`--batch-size must be a positive integer, got ${spec.batchSize}`);
  }
  const attribution = spec.attribution ?? "idf";
  if (!(ATTRIBUTIONS as readonly string[]).includes(attribution)) {
    throw new UserError(`unknown attribution "${attribution}" (valid: ${ATTRIBUTIONS.join(", ")})`);
  }
  if (attribution === "saliency" && !spec.attributionModel) throw new UserError("--attribution saliency needs --attribution-model <dir>");
  if (attribution === "saliency" && !existsSync(join(studentModelDir(spec.attributionModel!), "config.json"))) {
    throw new UserError(`--attribution-model "${spec.attributionModel}" is neither a finished run folder nor a model folder`, 404);
  }
}

function lossWeights(spec: DistillSpec): LossWeights {
  return { ...DEFAULT_WEIGHTS, rationale: spec.alpha ?? DEFAULT_WEIGHTS.rationale };
}

/** The student's tokenizer: the model folder's, the attribution model's (saliency must see the same ids), or a compact BPE of the dataset. */
function studentTokenizer(spec: DistillSpec, modelDir: string | null): Promise<LoadedCodec> {
  const saliency = spec.attribution === "saliency" && spec.selection.kind === "key";
  return loadCodec(spec.dataset, modelDir ?? (saliency ? studentModelDir(spec.attributionModel!) : undefined));
}

/** A run folder's model/ or a model folder itself. */
export function studentModelDir(runOrModelDir: string): string {
  const inner = join(runOrModelDir, "model");
  return existsSync(join(inner, "config.json")) ? inner : runOrModelDir;
}

/**
 * The first `limit` items whose answers pass the filter and sample mode, as training examples (several per item with
 * samples "all"; one for placement "none", which trains on the same items without showing the rationale), and the
 * counts the run records.
 */
async function chooseExamples(spec: DistillSpec, items: Item[], source: RationaleSource): Promise<{ chosen: ChosenExample[]; report: RationaleReport }> {
  const filter = spec.rationaleFilter ?? "agree";
  const samples = spec.samples ?? "first";
  const report: RationaleReport = {
    source: source.kind,
    name: source.name,
    teacher: source.teacher,
    template: source.template,
    filter,
    samples,
    part: spec.rationalePart ?? "explanation",
    items: 0,
    withRationale: 0,
    examples: 0,
    unchecked: 0,
    dropped: emptyDrops(),
  };
  const chosen: ChosenExample[] = [];
  const answers = await source.answers(items).catch((err) => {
    // a dataset without shipped rationales can still train the label-only baseline, on every item
    if (source.kind === "palm" && spec.placement === "none") return null;
    throw err;
  });
  for (let i = 0; i < items.length && report.withRationale < (spec.limit ?? Infinity); i++) {
    report.items++;
    if (!answers) {
      report.withRationale++;
      chosen.push({ item: items[i], answer: null });
      continue;
    }
    const choice = chooseAnswers(answers[i], filter, samples);
    if ("dropped" in choice) {
      report.dropped[choice.dropped]++;
      continue;
    }
    report.withRationale++;
    if (choice.answers.some((a) => a.agrees === null)) report.unchecked++;
    for (const answer of spec.placement === "none" ? choice.answers.slice(0, 1) : choice.answers) chosen.push({ item: items[i], answer });
  }
  report.examples = chosen.length;
  if (chosen.length === 0) {
    throw new UserError(
      `no training examples: no item of ${spec.dataset}/train has a rationale from ${report.name} that passes --rationale-filter ${filter} ` +
        `(dropped: ${describeDrops(report.dropped)}${report.dropped.disagrees + report.dropped.majority_disagrees > 0 ? "; --rationale-filter any keeps disagreeing ones" : ""})`,
      422,
    );
  }
  return { chosen, report };
}

async function keyAttribution(spec: DistillSpec, codec: LoadedCodec, chosen: ChosenExample[], options: DistillOptions): Promise<Attribution | undefined> {
  if (spec.selection.kind !== "key") return undefined;
  if (spec.attribution === "saliency") {
    const trainedAs = readRunSettings(spec.attributionModel!)?.placement;
    if (trainedAs && trainedAs !== "before") {
      options.log?.(`saliency: ${spec.attributionModel} was trained with placement "${trainedAs}"; attribution reads its label after the rationale, as a "before" student writes it`);
    }
    return saliencyAttribution({
      dataset: spec.dataset,
      modelDir: studentModelDir(spec.attributionModel!),
      items: chosen.map(({ item, answer }) => ({ item, rationale: answer!.rationale })),
      gpu: options.gpu,
      kernels: options.kernels,
      log: options.log,
    });
  }
  if ((spec.rationales ?? "palm") === "palm") return datasetIdfAttribution(spec.dataset, codec.codec, codec.key);
  // rationales of a teacher or a file: their document frequencies are cheap to count here
  const texts = chosen.flatMap(({ answer }) => (answer ? [` ${answer.rationale}`] : []));
  return idfOverlapAttribution(documentFrequencies(texts, codec.codec), codec.codec);
}

function buildExamples(spec: DistillSpec, chosen: ChosenExample[], tokenizer: TokenCodec, attribution?: Attribution): DistillExample[] {
  const config = { placement: spec.placement, selection: spec.selection, weights: lossWeights(spec), attribution, chat: spec.chatTemplate };
  return chosen.map(({ item, answer }) => buildExample(item, answer?.rationale ?? null, config, tokenizer));
}

async function initialStudent(model: ModelRef, vocabSize: number, longest: number, seed: number) {
  if (model.kind === "pretrained") {
    const loaded = await loadPretrained(model.dir);
    if (loaded.config.vocabSize < vocabSize) {
      throw new UserError(`${model.dir}: the model's vocabulary (${loaded.config.vocabSize}) is smaller than its tokenizer's (${vocabSize})`, 422);
    }
    return { config: loaded.config, params: loaded.params };
  }
  const config = presetConfig(model.size, { vocabSize, nPositions: Math.max(PRESETS[model.size].nPositions, longest) });
  return { config, params: initParams(paramLayout(config), seed) };
}

export function readRunSettings(runDir: string): RunSettings | null {
  const path = join(runDir, RUN_FILE);
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as RunSettings) : null;
}

/** Trains one run into spec.outDir; registers it (queued → running → done/failed) in the runs table. */
export async function trainDistillation(spec: DistillSpec, options: DistillOptions = {}): Promise<DistillResult> {
  validateSpec(spec);
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const runDir = resolve(spec.outDir);
  const name = spec.name ?? runDir.split("/").pop()!;
  const model = resolveModel(spec.model);
  const modelDir = model.kind === "pretrained" ? model.dir : null;

  const items = await loadSplit(spec.dataset, "train", { excludeDev: true });
  const source = await openRationaleSource(spec.rationales ?? "palm", {
    dataset: spec.dataset,
    split: "train",
    splitOptions: { excludeDev: true },
    db: options.db,
    template: spec.rationaleTemplate,
    part: spec.rationalePart,
  });
  const codec = await studentTokenizer(spec, modelDir);
  const tokenizer = codec.codec;
  const tokenizerSource = codec.source;
  const { chosen, report } = await chooseExamples(spec, items, source);
  const skipped = report.items - report.withRationale;
  const attribution = await keyAttribution(spec, codec, chosen, { ...options, log });
  const examples = buildExamples(spec, chosen, tokenizer, attribution);

  const longest = Math.max(...examples.map((e) => e.ids.length));
  const student = await initialStudent(model, tokenizer.vocabSize, longest, spec.seed);
  // a sequence of n tokens makes n−1 predictions; one T-wide row holds a sequence of T+1
  const seqLength = Math.min(spec.maxLength ?? longest - 1, student.config.nPositions);
  const truncated = examples.filter((e) => e.ids.length - 1 > seqLength).length;
  const batchSize = Math.min(spec.batchSize ?? 8, examples.length);
  const steps = Math.max(1, Math.ceil((spec.epochs * examples.length) / batchSize));
  if (steps > MAX_STEPS) throw new UserError(`this run would take ${steps} steps (epochs x examples / batch size); the most is ${MAX_STEPS}`, 422);
  const optimizer = { ...DEFAULT_OPTIMIZER, ...spec.optimizer };

  // with the device at hand, an unfittable run is refused before anything is written or registered
  if (options.gpu) assertTrainingFits(student.config, { B: batchSize, T: seqLength }, options.gpu.device.limits);
  mkdirSync(runDir, { recursive: true });
  const tokenizerFiles = await saveModelTokenizer(join(runDir, "tokenizer"), tokenizer);
  const { runs, close } = openRunStore(options.db);
  const previous = runs.byDir(runDir);
  const settings: RunSettings = {
    id: previous?.id ?? readRunSettings(runDir)?.id ?? "",
    name,
    dataset: spec.dataset,
    placement: spec.placement,
    selection: spec.selection,
    weights: lossWeights(spec),
    template: DEFAULT_TEMPLATE,
    model: spec.model,
    modelConfig: student.config,
    tokenizer: tokenizerSource,
    rationales: spec.rationales ?? "palm",
    rationaleSource: report,
    attribution: spec.selection.kind === "key" ? { kind: spec.attribution ?? "idf", model: spec.attributionModel } : null,
    epochs: spec.epochs,
    limit: spec.limit ?? null,
    batchSize,
    seqLength,
    steps,
    optimizer,
    seed: spec.seed,
    examples: examples.length,
    skippedNoRationale: skipped,
    truncated,
    longestTarget: Math.max(...examples.map((e) => e.ids.length - e.promptLength)),
    chatTemplate: spec.chatTemplate ?? false,
  };
  const row = runs.register({ id: settings.id || undefined, name, runDir, config: settings as unknown as Record<string, unknown> });
  settings.id = row.id;
  await Bun.write(join(runDir, RUN_FILE), JSON.stringify(settings, null, 2) + "\n");
  log(
    `run ${row.id} (${name}): ${spec.dataset} ${spec.placement}/${spec.selection.kind}, ${examples.length} examples` +
      ` from ${report.source === "store" ? `teacher ${report.teacher} (${report.template})` : report.name}` +
      `${skipped ? ` (${skipped} items dropped: ${describeDrops(report.dropped)})` : ""}${truncated ? `, ${truncated} cut to ${seqLength + 1} tokens` : ""}, ` +
      `${steps} steps of ${batchSize}x${seqLength}, model ${spec.model} (vocab ${student.config.vocabSize})`,
  );

  runs.markRunning(row.id);
  try {
    const result = await runTraining({
      outDir: runDir,
      config: student.config,
      initialParams: student.params,
      source: new SequenceSource(examples.map(toSequence), batchSize, seqLength),
      steps,
      optimizer,
      seed: spec.seed,
      checkpointEvery: spec.checkpointEvery ?? 0,
      extraFiles: tokenizerFiles,
      saveDtype: spec.saveDtype,
      run: { dataset: spec.dataset, placement: spec.placement, selection: spec.selection, weights: settings.weights, model: spec.model, examples: examples.length, batchSize, seqLength, steps },
      resume: spec.resume,
      gpu: options.gpu,
      kernels: options.kernels,
      stopAfter: options.stopAfter,
      onStep: (m) => {
        if (m.step === 1 || m.step % 10 === 0 || m.step === steps) {
          log(`step ${m.step}/${steps}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toExponential(2)}  ${Math.round(m.tokens_per_s)} tok/s`);
        }
      },
    });
    const all = readMetrics(join(runDir, "metrics.jsonl"));
    const finalLoss = all.at(-1)?.loss ?? Number.NaN;
    if (result.steps === steps) {
      runs.markDone(row.id, { steps, final_loss: finalLoss, first_loss: all[0]?.loss, elapsed_s: all.at(-1)?.elapsed_s, examples: examples.length });
    } else {
      runs.markFailed(row.id, `stopped after step ${result.steps} of ${steps} (resume with --resume)`);
    }
    return { runId: row.id, runDir, modelDir: result.modelDir, steps: result.steps, finalLoss, examples: examples.length, metrics: result.metrics };
  } catch (err) {
    runs.markFailed(row.id, (err as Error).message);
    throw err;
  } finally {
    close();
  }
}
