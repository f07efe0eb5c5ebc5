/**
 * Label accuracy of a student, two ways:
 * - generation (the primary metric): greedy decoding as the student was trained — for placement none/after it
 *   writes only the label and stops (no reasoning at test time), for "before" it writes a rationale, then
 *   "So the answer is (x)." (stopped at the label or a token budget);
 * - rank classification: the choice whose label tokens get the highest total log-probability given the prompt
 *   (for "before": given the prompt, the generated rationale and the answer phrase). Only for multiple choice.
 * Per-example predictions go to eval-<split>.jsonl in the run folder, the summary to eval-<split>.json.
 */
import type { Database } from "bun:sqlite";
import { join } from "node:path";
import { loadSplit } from "../data/registry.ts";
import type { Choice, Item } from "../data/types.ts";
import { promptText, targetPieces } from "../distill/placement.ts";
import { promptIds } from "../distill/codec.ts";
import { UserError } from "../errors.ts";
import { acquireGpu, type Gpu } from "../gpu/device.ts";
import { createKernels, type Kernels } from "../gpu/kernels/index.ts";
import { openRunStore } from "../store/runs.ts";
import { Decoder } from "./decode.ts";
import { labelWritten, parseOutput, sameLabel } from "./labels.ts";
import type { StudentCache } from "./resident.ts";
import { GREEDY, type Sampling } from "./sampling.ts";
import { loadStudent, type Student } from "./student.ts";

/** Tokens a label may take when it is all the student writes: "(A)", "(1234.5)" and an end-of-text. */
const LABEL_BUDGET = 16;
/** Rationale budget for placement "before" when the run does not say how long its targets were. */
const DEFAULT_RATIONALE_BUDGET = 128;

export interface Prediction {
  index: number;
  id: string;
  gold: string;
  predicted: string | null;
  correct: boolean;
  /** Everything the student wrote after the prompt. */
  generated: string;
  rationale: string | null;
  rankPredicted: string | null;
  rankCorrect: boolean | null;
  /** Total log-probability of each choice's label tokens. */
  choiceLogProbs: Record<string, number> | null;
}

export interface EvalOptions {
  limit?: number;
  batchSize?: number;
  /** Resolve run ids/names in this database; also records the accuracy in the run's final metrics. */
  db?: Database | string;
  gpu?: Gpu;
  kernels?: Kernels;
  /** Students kept loaded (and their decoders and GPU) between calls; gpu and kernels then come from it. */
  students?: StudentCache;
  /** How generation picks tokens (default greedy); rank classification does not depend on it. */
  sampling?: Sampling;
  /** Write eval-<split>.jsonl / .json (default true). */
  write?: boolean;
  log?: (line: string) => void;
}

export interface EvalResult {
  dataset: string;
  split: string;
  n: number;
  accuracy: number;
  /** null when the dataset has no answer choices. */
  rankAccuracy: number | null;
  placement: string;
  model: string;
  /** How generation picked its tokens. */
  sampling: Sampling;
  predictions: Prediction[];
  predictionsFile: string | null;
  summaryFile: string | null;
}

function generationBudget(student: Student): number {
  if (student.placement !== "before") return LABEL_BUDGET;
  return (student.run?.longestTarget ?? DEFAULT_RATIONALE_BUDGET) + 8;
}

/**
 * The GPU side of evaluation: a decoder for these items (maxLength tokens of context), built and torn down around
 * `use` — or the resident student's, kept for the next call, when options.students is given.
 */
async function withDecoder<T>(student: Student, prompts: number[][], options: EvalOptions, use: (decoder: Decoder, maxLength: number) => Promise<T>): Promise<T> {
  const maxLength = Math.min(student.config.nPositions, Math.max(...prompts.map((p) => p.length)) + generationBudget(student) + LABEL_BUDGET);
  const maxRows = Math.max(1, Math.min(options.batchSize ?? 8, prompts.length * 5));
  if (options.students) return use(await options.students.decoder(student, maxRows, maxLength), maxLength);
  const gpu = options.gpu ?? (await acquireGpu());
  try {
    const kernels = options.kernels ?? (await createKernels(gpu));
    const decoder = new Decoder(gpu, kernels, student.config, student.params, maxRows, maxLength);
    try {
      return await use(decoder, maxLength);
    } finally {
      decoder.destroy();
    }
  } finally {
    if (!options.gpu) gpu.destroy();
  }
}

const labelPiece = (student: Student, label: string) => targetPieces("none", label, "", student.template)[0].text;

/** The context the label follows: the prompt, and for "before" the student's rationale and the answer phrase. */
function labelContext(student: Student, prompt: number[], rationale: string | null): number[] {
  if (student.placement !== "before") return prompt;
  const { codec, template } = student;
  const reasoning = rationale ? codec.encode(template.separator + rationale) : [];
  return [...prompt, ...reasoning, ...codec.encode(template.separator + template.answerPrefix)];
}

async function rankChoices(student: Student, decoder: Decoder, maxLength: number, contexts: number[][], items: Item[]): Promise<Array<Record<string, number> | null>> {
  const rows = items.flatMap((item, i) =>
    (item.choices ?? []).map((choice) => {
      const ids = [...contexts[i], ...student.codec.encode(labelPiece(student, choice.label))];
      // a long generated rationale can overflow the context: keep its end, where the label's evidence is
      const cut = Math.max(0, ids.length - maxLength);
      return { ids: ids.slice(cut), from: contexts[i].length - cut };
    }),
  );
  const logProbs = rows.length ? await decoder.logProbabilities(rows) : [];
  let next = 0;
  return items.map((item) => (item.choices ? Object.fromEntries(item.choices.map((c) => [c.label, logProbs[next++]])) : null));
}

function best(scores: Record<string, number> | null): string | null {
  if (!scores) return null;
  let label: string | null = null;
  for (const [choice, score] of Object.entries(scores)) if (label === null || score > scores[label]) label = choice;
  return label;
}

/** Generation + rank classification for a list of items (their `answer` may be empty for unlabeled questions). */
export async function predictItems(student: Student, items: Item[], options: EvalOptions = {}): Promise<Prediction[]> {
  if (items.length === 0) return [];
  const { codec, placement, template } = student;
  const prompts = items.map((item) => promptIds(codec, promptText(item, template), student.chat));
  return withDecoder(student, prompts, options, async (decoder, maxLength) => {
    const budget = generationBudget(student);
    const stop = (ids: number[]) => ids.at(-1) === codec.eotId || labelWritten(codec.decode(ids), placement, template);
    const generated = await decoder.generate(prompts.map((prompt) => ({ prompt, maxNewTokens: budget })), stop, { sampling: options.sampling, maxLength });
    const texts = generated.map((ids) => codec.decode(ids.filter((id) => id !== codec.eotId)));
    const parsed = texts.map((text) => parseOutput(text, placement, template));
    const contexts = prompts.map((prompt, i) => labelContext(student, prompt, parsed[i].rationale));
    const scores = await rankChoices(student, decoder, maxLength, contexts, items);
    return items.map((item, i) => {
      const rankPredicted = best(scores[i]);
      return {
        index: item.index,
        id: item.id,
        gold: item.answer,
        predicted: parsed[i].label,
        correct: sameLabel(parsed[i].label, item.answer),
        generated: texts[i],
        rationale: parsed[i].rationale,
        rankPredicted,
        rankCorrect: rankPredicted === null ? null : sameLabel(rankPredicted, item.answer),
        choiceLogProbs: scores[i],
      };
    });
  });
}

/** Accuracy and rank accuracy recounted from predictions (what the summary reports). */
export function accuracyOf(predictions: Prediction[]): { accuracy: number; rankAccuracy: number | null } {
  const n = predictions.length;
  const ranked = predictions.filter((p) => p.rankCorrect !== null);
  return {
    accuracy: n ? predictions.filter((p) => p.correct).length / n : 0,
    rankAccuracy: ranked.length ? ranked.filter((p) => p.rankCorrect).length / ranked.length : null,
  };
}

/** Evaluates a run (folder, id or name) or a model folder on a dataset split. */
export async function evaluate(target: string, dataset: string | undefined, split = "test", options: EvalOptions = {}): Promise<EvalResult> {
  const started = performance.now();
  if (options.limit !== undefined && !(Number.isInteger(options.limit) && options.limit >= 1)) {
    throw new UserError(`--limit must be a positive integer, got ${options.limit}`);
  }
  const student = await (options.students?.student(target, options.db) ?? loadStudent(target, options.db));
  const name = dataset ?? student.run?.dataset;
  if (!name) throw new UserError(`${target} is a bare model folder: say which dataset to evaluate on (--dataset)`);
  const items = (await loadSplit(name, split)).slice(0, options.limit);
  options.log?.(`evaluating ${student.modelDir} (placement ${student.placement}) on ${name}/${split}: ${items.length} items`);
  const predictions = await predictItems(student, items, options);
  const { accuracy, rankAccuracy } = accuracyOf(predictions);
  const result: EvalResult = {
    dataset: name,
    split,
    n: predictions.length,
    accuracy,
    rankAccuracy,
    placement: student.placement,
    model: student.modelDir,
    sampling: options.sampling ?? GREEDY,
    predictions,
    predictionsFile: null,
    summaryFile: null,
  };
  if (options.write !== false) {
    result.predictionsFile = join(student.outDir, `eval-${split}.jsonl`);
    result.summaryFile = join(student.outDir, `eval-${split}.json`);
    await Bun.write(result.predictionsFile, predictions.map((p) => JSON.stringify(p)).join("\n") + (predictions.length ? "\n" : ""));
    const { predictions: _, ...summary } = result;
    await Bun.write(result.summaryFile, JSON.stringify({ ...summary, limit: options.limit ?? null, elapsed_s: (performance.now() - started) / 1000 }, null, 2) + "\n");
  }
  if (options.db && student.run?.id) recordAccuracy(options.db, student.run.id, split, result);
  return result;
}

function recordAccuracy(db: Database | string, runId: string, split: string, result: EvalResult): void {
  const { runs, close } = openRunStore(db);
  try {
    runs.mergeMetrics(runId, { [`${split}_accuracy`]: result.accuracy, [`${split}_rank_accuracy`]: result.rankAccuracy, [`${split}_n`]: result.n });
  } finally {
    close();
  }
}

export interface PredictResult {
  label: string | null;
  /** The student's reasoning (placement "before" only). */
  rationale: string | null;
  generated: string;
  rankLabel: string | null;
  choiceLogProbs: Record<string, number> | null;
}

/** One question: choices as texts (labelled A, B, …) or {label, text}. */
export async function predict(target: string, question: string, choices?: Array<string | Choice>, options: EvalOptions = {}): Promise<PredictResult> {
  if (typeof question !== "string" || question.trim() === "") throw new UserError("question must be a non-empty string");
  const student = await (options.students?.student(target, options.db) ?? loadStudent(target, options.db));
  const labelled = choices?.map((c, i) => (typeof c === "string" ? { label: String.fromCharCode(65 + i), text: c } : c));
  const item: Item = { id: "question", dataset: "predict", split: "predict", index: 0, question, choices: labelled, answer: "" };
  const [p] = await predictItems(student, [item], options);
  return { label: p.predicted, rationale: p.rationale, generated: p.generated, rankLabel: p.rankPredicted, choiceLogProbs: p.choiceLogProbs };
}
