/**
 * One distillation run, end to end: training items and their teacher rationales → examples under one experimental
 * condition (placement × selection × α) → a student (Hugging Face weights, or a seeded from-scratch GPT-2 sized to the
 * tokenizer and the longest example) → `runTraining` into the run folder, with the run registered in SQLite and every
 * setting written to run.json, which evaluation reads back (placement, template, budget).
 */
import type { Database } from "bun:sqlite";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { getDataset, loadSplit } from "../data/registry.ts";
import type { Item } from "../data/types.ts";
import { UserError } from "../errors.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Kernels } from "../gpu/kernels/index.ts";
import { type ModelConfig, PRESETS, presetConfig } from "../model/config.ts";
import { loadPretrained } from "../model/hf.ts";
import { type ModelRef, resolveModel } from "../model/ref.ts";
import { MAX_STEPS } from "../bounds.ts";
import { initParams } from "../model/init.ts";
import { paramLayout } from "../model/params.ts";
import { type ModelTokenizer, saveModelTokenizer } from "../model/hf-tokenizer.ts";
import { assertTrainingFits } from "../model/memory.ts";
import { type Dtype, parseDtype } from "../model/safetensors.ts";
import type { TokenCodec } from "./codec.ts";
import { openRunStore } from "../store/runs.ts";
import { type Batching, DEFAULT_BATCHING, SequenceSource } from "../train/batches.ts";
import { readMetrics, type StepMetrics } from "../train/metrics.ts";
import { runTraining, type Validation } from "../train/run.ts";
import { DEFAULT_OPTIMIZER, type OptimizerOptions } from "../train/trainer.ts";
import { type Attribution, datasetIdfAttribution, randomAttribution, documentFrequencies, idfOverlapAttribution } from "./attribution.ts";
import { buildExample, type DistillExample, toSequence } from "./example.ts";
import { DEFAULT_TEMPLATE, type Placement, PLACEMENTS, type Template } from "./placement.ts";
import type { Selection } from "./selection.ts";
import { type AttributionKind, loraSettingsOf, parseRunSpec, type RunSpec, type RunSpecInput, selectionOf } from "./run-spec.ts";
import { initLora, loraLayout, loraParameterCount, type LoraSettings } from "../model/lora.ts";
import { type ChosenExample, chooseAnswers, defaultRationaleSource, describeDrops, emptyDrops, openRationaleSource, type RationaleReport, type RationaleSource } from "./rationales.ts";
import { saliencyAttribution } from "./saliency.ts";
import { type LoadedCodec, loadCodec } from "./tokenizer.ts";
import { DEFAULT_WEIGHTS, type LossWeights } from "./weights.ts";

export { ATTRIBUTIONS, type AttributionKind } from "./run-spec.ts";

/** The key selection of a spec, if it has one (its k and attribution). */
function keySelection(spec: RunSpec) {
  return spec.selection.kind === "key" ? spec.selection : undefined;
}

export interface DistillOptions {
  /** The run folder. */
  outDir: string;
  /** Continue from the folder's latest checkpoint. */
  resume?: boolean;
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
  /** The run's settings as given (src/distill/run-spec.ts); the fields below are what they resolved to. */
  spec: RunSpec;
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
  /** Longest batch (each bucketed batch is only as long as its longest example). */
  seqLength: number;
  batching: Batching;
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
  /** LoRA adapters trained on the frozen base (null: full fine-tuning), and how many parameters they add. */
  lora?: (LoraSettings & { modules: number; trainableParameters: number }) | null;
}

export const RUN_FILE = "run.json";

/** What the schema cannot know: that the saliency model named is a trained student on disk. */
export function validateSpec(spec: RunSpec): void {
  const key = keySelection(spec);
  if (key?.attribution === "saliency" && !existsSync(join(studentModelDir(key.attributionModel!), "config.json"))) {
    throw new UserError(`--attribution-model "${key.attributionModel}" is neither a finished run folder nor a model folder`, 404);
  }
}

function lossWeights(spec: RunSpec): LossWeights {
  return { ...DEFAULT_WEIGHTS, rationale: spec.training.alpha ?? DEFAULT_WEIGHTS.rationale };
}

/** The student's tokenizer: the model folder's, the attribution model's (saliency must see the same ids), or a compact BPE of the dataset. */
function studentTokenizer(spec: RunSpec, modelDir: string | null): Promise<LoadedCodec> {
  const saliency = keySelection(spec)?.attribution === "saliency" && spec.selection.kind === "key";
  return loadCodec(spec.dataset, modelDir ?? (saliency ? studentModelDir(keySelection(spec)?.attributionModel!) : undefined));
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
async function chooseExamples(spec: RunSpec, items: Item[], source: RationaleSource): Promise<{ chosen: ChosenExample[]; report: RationaleReport }> {
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

async function keyAttribution(spec: RunSpec, codec: LoadedCodec, chosen: ChosenExample[], source: RationaleSource, options: Pick<DistillOptions, "gpu" | "kernels" | "log">): Promise<Attribution | undefined> {
  if (spec.selection.kind !== "key") return undefined;
  if (keySelection(spec)?.attribution === "random") return randomAttribution(spec.seed);
  if (keySelection(spec)?.attribution === "saliency") {
    const trainedAs = readRunSettings(keySelection(spec)?.attributionModel!)?.placement;
    if (trainedAs && trainedAs !== "before") {
      options.log?.(`saliency: ${keySelection(spec)?.attributionModel} was trained with placement "${trainedAs}"; attribution reads its label after the rationale, as a "before" student writes it`);
    }
    return saliencyAttribution({
      dataset: spec.dataset,
      modelDir: studentModelDir(keySelection(spec)?.attributionModel!),
      items: chosen.map(({ item, answer }) => ({ item, rationale: answer!.rationale })),
      gpu: options.gpu,
      kernels: options.kernels,
      log: options.log,
    });
  }
  // the shipped and the dataset's own rationales: the dataset's precomputed document frequencies
  if (source.kind === "palm" || source.kind === "gold") return datasetIdfAttribution(spec.dataset, codec.codec, codec.key);
  // rationales of a teacher or a file: their document frequencies are cheap to count here
  const texts = chosen.flatMap(({ answer }) => (answer ? [` ${answer.rationale}`] : []));
  return idfOverlapAttribution(documentFrequencies(texts, codec.codec), codec.codec);
}

function buildExamples(spec: RunSpec, chosen: ChosenExample[], tokenizer: TokenCodec, template: Template, attribution?: Attribution): DistillExample[] {
  const config = { placement: spec.placement, selection: selectionOf(spec), weights: lossWeights(spec), attribution, template, chat: spec.chatTemplate };
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

/** Dev accuracy of the weights being trained: the label the student writes, as the test metric reads it. */
async function devValidation(spec: RunSpec, settings: RunSettings, codec: ModelTokenizer, runDir: string, options: DistillOptions, log: (line: string) => void): Promise<Validation> {
  const { predictItems, accuracyOf } = await import("../eval/evaluate.ts");
  const dev = (await loadSplit(spec.dataset, "dev")).slice(0, spec.training.devLimit ?? 200);
  return {
    every: spec.training.devEvery!,
    patience: spec.training.patience,
    async score(params, step) {
      const student = { modelDir: runDir, outDir: runDir, run: settings, placement: settings.placement, template: settings.template, config: settings.modelConfig, params, codec, chat: spec.chatTemplate ?? false };
      const { accuracy } = accuracyOf(await predictItems(student, dev, { gpu: options.gpu, kernels: options.kernels }));
      log(`dev step ${step}: accuracy ${(100 * accuracy).toFixed(1)}% on ${dev.length} items`);
      return accuracy;
    },
  };
}

/**
 * The examples a spec trains on — items, their rationales (chosen by filter and sample mode), the condition applied
 * and tokenized — and what they were built from. Needs no GPU unless the key selection's attribution is saliency.
 */
export async function distillationExamples(spec: RunSpec, options: Pick<DistillOptions, "db" | "gpu" | "kernels" | "log">) {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const model = resolveModel(spec.model);
  const modelDir = model.kind === "pretrained" ? model.dir : null;
  const items = await loadSplit(spec.dataset, "train", { excludeDev: true });
  const rationales = spec.rationales ?? defaultRationaleSource(items);
  const source = await openRationaleSource(rationales, {
    dataset: spec.dataset,
    split: "train",
    splitOptions: { excludeDev: true },
    db: options.db,
    template: spec.rationaleTemplate,
    part: spec.rationalePart,
  });
  const codec = await studentTokenizer(spec, modelDir);
  const { chosen, report } = await chooseExamples(spec, items, source);
  const attribution = await keyAttribution(spec, codec, chosen, source, { ...options, log });
  const template = getDataset(spec.dataset).template ?? DEFAULT_TEMPLATE;
  const examples = buildExamples(spec, chosen, codec.codec, template, attribution);
  return { model, rationales, codec, report, template, examples };
}

/** Trains one run into options.outDir; registers it (queued → running → done/failed) in the runs table. */
export async function trainDistillation(input: RunSpecInput, options: DistillOptions): Promise<DistillResult> {
  // a library caller's spec meets the same schema as the CLI's and the server's
  const spec = parseRunSpec(input);
  validateSpec(spec);
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const runDir = resolve(options.outDir);
  const name = spec.name ?? runDir.split("/").pop()!;
  const { model, rationales, codec, report, template, examples } = await distillationExamples(spec, { ...options, log });
  const tokenizer = codec.codec;
  const tokenizerSource = codec.source;
  const skipped = report.items - report.withRationale;

  const longest = Math.max(...examples.map((e) => e.ids.length));
  const student = await initialStudent(model, tokenizer.vocabSize, longest, spec.seed);
  // a sequence of n tokens makes n−1 predictions; one T-wide row holds a sequence of T+1
  const seqLength = Math.min(spec.training.maxSeqLength ?? longest - 1, student.config.nPositions);
  const truncated = examples.filter((e) => e.ids.length - 1 > seqLength).length;
  const batchSize = Math.min(spec.training.batchSize ?? 8, examples.length);
  const steps = spec.untrained ? 0 : Math.max(1, Math.ceil((spec.epochs * examples.length) / batchSize));
  if (steps > MAX_STEPS) throw new UserError(`this run would take ${steps} steps (epochs x examples / batch size); the most is ${MAX_STEPS}`, 422);
  const { lr, warmupSteps, weightDecay, gradClip } = spec.training;
  const chosenOptimizer = Object.fromEntries(Object.entries({ lr, warmupSteps, weightDecay, gradClip }).filter(([, v]) => v !== undefined));
  const optimizer = { ...DEFAULT_OPTIMIZER, ...chosenOptimizer };
  const batching = spec.training.batching ?? DEFAULT_BATCHING;

  const loraSettings = loraSettingsOf(spec.training, student.config);
  const lora = loraSettings ? loraLayout(student.config, loraSettings) : undefined;
  // with the device at hand, an unfittable run is refused before anything is written or registered
  const checkpointing = spec.training.checkpointActivations ?? false;
  if (options.gpu) assertTrainingFits(student.config, { B: batchSize, T: seqLength, lora, checkpointing }, options.gpu.device.limits);
  mkdirSync(runDir, { recursive: true });
  const tokenizerFiles = await saveModelTokenizer(join(runDir, "tokenizer"), tokenizer);
  const { runs, close } = openRunStore(options.db);
  const previous = runs.byDir(runDir);
  const settings: RunSettings = {
    id: previous?.id ?? readRunSettings(runDir)?.id ?? "",
    name,
    spec,
    dataset: spec.dataset,
    placement: spec.placement,
    selection: selectionOf(spec),
    weights: lossWeights(spec),
    template,
    model: spec.model,
    modelConfig: student.config,
    tokenizer: tokenizerSource,
    rationales,
    rationaleSource: report,
    attribution: spec.selection.kind === "key" ? { kind: keySelection(spec)?.attribution ?? "idf", model: keySelection(spec)?.attributionModel } : null,
    epochs: spec.epochs,
    limit: spec.limit ?? null,
    batchSize,
    seqLength,
    batching,
    steps,
    optimizer,
    seed: spec.seed,
    examples: examples.length,
    skippedNoRationale: skipped,
    truncated,
    longestTarget: Math.max(...examples.map((e) => e.ids.length - e.promptLength)),
    chatTemplate: spec.chatTemplate ?? false,
    lora: lora ? { ...lora.settings, modules: lora.adapters.length, trainableParameters: loraParameterCount(lora) } : null,
  };
  const row = runs.register({ id: settings.id || undefined, name, runDir, config: settings as unknown as Record<string, unknown> });
  settings.id = row.id;
  await Bun.write(join(runDir, RUN_FILE), JSON.stringify(settings, null, 2) + "\n");
  log(
    `run ${row.id} (${name}): ${spec.dataset} ${spec.placement}/${spec.selection.kind}, ${examples.length} examples` +
      ` from ${report.source === "store" ? `teacher ${report.teacher} (${report.template})` : report.name}` +
      `${skipped ? ` (${skipped} items dropped: ${describeDrops(report.dropped)})` : ""}${truncated ? `, ${truncated} cut to ${seqLength + 1} tokens` : ""}, ` +
      `${steps} steps of ${batchSize}x${seqLength}${batching === "bucketed" ? " at most (length-bucketed)" : ""}, model ${spec.model} (vocab ${student.config.vocabSize})` +
      (lora ? `, LoRA r=${lora.rank} alpha=${lora.settings.alpha} on ${lora.settings.targets.join(",")} (${loraParameterCount(lora).toLocaleString("en-US")} trainable, base frozen)` : ""),
  );

  runs.markRunning(row.id);
  try {
    const result = await runTraining({
      outDir: runDir,
      config: student.config,
      initialParams: student.params,
      source: new SequenceSource(examples.map(toSequence), batchSize, seqLength, batching),
      steps,
      optimizer,
      seed: spec.seed,
      checkpointEvery: spec.training.checkpointEvery ?? 0,
      extraFiles: tokenizerFiles,
      saveDtype: spec.saveDtype === undefined ? undefined : parseDtype(spec.saveDtype)!,
      run: { dataset: spec.dataset, placement: spec.placement, selection: selectionOf(spec), weights: settings.weights, model: spec.model, examples: examples.length, batchSize, seqLength, steps, batching, lora: lora?.settings ?? null },
      lora: lora ? { layout: lora, adapters: initLora(lora, spec.seed), baseModel: model.kind === "pretrained" ? model.dir : undefined } : undefined,
      checkpointing,
      resume: options.resume,
      gpu: options.gpu,
      kernels: options.kernels,
      stopAfter: options.stopAfter,
      validation: spec.training.devEvery ? await devValidation(spec, settings, tokenizer, runDir, options, log) : undefined,
      onStep: (m) => {
        if (m.step === 1 || m.step % 10 === 0 || m.step === steps) {
          log(`step ${m.step}/${steps}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toExponential(2)}  ${Math.round(m.tokens_per_s)} tok/s`);
        }
      },
    });
    const all = readMetrics(join(runDir, "metrics.jsonl"));
    const finalLoss = all.at(-1)?.loss ?? Number.NaN;
    if (result.finished) {
      const dev = result.best ? { dev_best_step: result.best.step, dev_best_accuracy: result.best.score, stopped_early: result.stoppedEarly ?? false } : {};
      runs.markDone(row.id, { steps: result.steps, final_loss: finalLoss, first_loss: all[0]?.loss, elapsed_s: all.at(-1)?.elapsed_s, examples: examples.length, ...dev });
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
