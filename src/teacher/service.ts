/**
 * TeacherService: the one way to get chain-of-thought rationales from the teacher. A stored answer is never requested
 * again (cache key = item identity + model + template version + generation params + sample index), identical requests
 * in flight at the same time share one teacher call, and failures are recorded but never stored as rationales.
 *
 * n samples use sample indices 0..n-1; the ones not yet stored are requested in ONE call with `n` = how many are
 * missing. The Batch-API path builds its requests with `plan` and feeds the answers back through `ingest`, so both
 * paths store exactly the same records under the same keys.
 */
import type { Database } from "bun:sqlite";
import type { Choice } from "../data/types.ts";
import { RationaleStore, rationaleKey, type RationaleRecord } from "../store/rationales.ts";
import { finishFailure, TeacherClient, type ChatChoice, type ChatRequest, type ChatResult } from "./client.ts";
import { TeacherError } from "./errors.ts";
import { agreesWithGold, parseCompletion } from "./parse.ts";
import { costUsd } from "./pricing.ts";
import { STOP_SEQUENCES, templateFor, type AnswerFormat, type PromptTemplate } from "./prompts.ts";

export { TeacherError, isTeacherError, type TeacherFailureKind } from "./errors.ts";

/** What the teacher is asked about: a dataset item, or a free question (identity = normalised text + choices). */
export interface TeacherItem {
  question: string;
  choices?: Choice[];
  /** Gold answer ("B", "42"); without it `agrees` is null. */
  answer?: string;
  dataset?: string;
  split?: string;
  id?: string;
}

export interface GenerationParams {
  model?: string;
  temperature?: number;
  maxTokens?: number;
  /** Number of samples (indices 0..n-1); each is cached on its own. */
  n?: number;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

export interface RationaleSample {
  rationale: string;
  /** Normalised label: "A".."E" for multiple choice, a canonical number string for math; null when unparseable. */
  label: string | null;
  /** Label equals the gold answer; null when the item has no gold answer. */
  agrees: boolean | null;
  /** True when served from the store without a teacher call. */
  fromStore: boolean;
  /** The cache key (hex SHA-256). */
  key: string;
  sampleIndex: number;
  model: string;
  template: string;
  /** This sample's share of the call's tokens (a call with n>1 is split evenly). */
  usage: TokenUsage | null;
  costUsd: number | null;
}

export interface RationaleRequest {
  item: TeacherItem;
  params?: GenerationParams;
}

export interface RationaleResult {
  samples: RationaleSample[];
}

export interface TeacherDefaults {
  model: string;
  temperature: number;
  maxTokens: number;
  n: number;
  /** Stop sequences sent with every request (default: the next few-shot "Q:"); [] for models that reject `stop`. */
  stop: string[];
}

export interface TeacherServiceOptions {
  db: Database;
  /** Built from the environment (OPENAI_BASE_URL, OPENAI_API_KEY, TEACHER_MODEL) when absent. */
  client?: TeacherClient;
  defaults?: Partial<TeacherDefaults>;
  /** Prompt templates to use instead of the shipped ones (e.g. `loadTemplate("my-exemplars.json")`). */
  templates?: Partial<Record<AnswerFormat, PromptTemplate>>;
}

/** Everything needed to ask for (and store) the samples of one request, computed without any I/O. */
export interface RationalePlan {
  item: TeacherItem;
  template: PromptTemplate;
  /** The chat request for ALL n samples; send `n: missing.length` for a subset. */
  request: ChatRequest;
  /** The generation params that are part of the key (and stored as provenance). */
  keyParams: { temperature: number; maxTokens: number };
  /** keys[i] is sample i's cache key. */
  keys: string[];
}

/** Evenly split `total` over `parts`, the remainder going to the first ones, so the shares add up exactly. */
function share(total: number, parts: number, index: number): number {
  return Math.floor(total / parts) + (index < total % parts ? 1 : 0);
}

function sampleOf(record: RationaleRecord, fromStore: boolean): RationaleSample {
  return {
    rationale: record.rationale,
    label: record.label,
    agrees: record.agrees,
    fromStore,
    key: record.key,
    sampleIndex: record.sampleIndex,
    model: record.model,
    template: record.template,
    usage:
      record.promptTokens === null || record.completionTokens === null
        ? null
        : { promptTokens: record.promptTokens, completionTokens: record.completionTokens },
    costUsd: record.costUsd,
  };
}

export class TeacherService {
  readonly store: RationaleStore;
  readonly client: TeacherClient;
  readonly defaults: TeacherDefaults;
  /** Single flight: one promise per cache key being fetched right now. */
  private readonly inFlight = new Map<string, Promise<RationaleSample>>();
  private readonly templates: Partial<Record<AnswerFormat, PromptTemplate>>;

  constructor(options: TeacherServiceOptions) {
    this.store = new RationaleStore(options.db);
    this.client = options.client ?? new TeacherClient();
    this.templates = options.templates ?? {};
    this.defaults = { model: this.client.model, temperature: 0, maxTokens: 256, n: 1, stop: STOP_SEQUENCES, ...options.defaults };
  }

  plan({ item, params = {} }: RationaleRequest): RationalePlan {
    const shipped = templateFor(item);
    const template = this.templates[shipped.format] ?? shipped;
    const model = params.model ?? this.defaults.model;
    const keyParams = {
      temperature: params.temperature ?? this.defaults.temperature,
      maxTokens: params.maxTokens ?? this.defaults.maxTokens,
    };
    const n = params.n ?? this.defaults.n;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer, got ${n}`);
    const keys = Array.from({ length: n }, (_, sampleIndex) =>
      rationaleKey({
        item: { question: item.question, choices: item.choices, dataset: item.dataset, id: item.id },
        model,
        template: template.version,
        params: keyParams,
        sampleIndex,
      }),
    );
    const request: ChatRequest = { prompt: template.render(item), model, ...keyParams, n, stop: this.defaults.stop };
    return { item, template, request, keyParams, keys };
  }

  /** Samples 0..n-1 for the item: from the store where present, otherwise from one shared teacher call. */
  async rationales(request: RationaleRequest): Promise<RationaleResult> {
    const plan = this.plan(request);
    const pending: Array<Promise<RationaleSample>> = [];
    const missing: number[] = [];
    plan.keys.forEach((key, sampleIndex) => {
      const stored = this.store.get(key);
      const shared = this.inFlight.get(key);
      if (stored) pending[sampleIndex] = Promise.resolve(sampleOf(stored, true));
      else if (shared) pending[sampleIndex] = shared;
      else missing.push(sampleIndex);
    });
    if (missing.length > 0) {
      const call = this.fetchSamples(plan, missing);
      missing.forEach((sampleIndex, j) => {
        const key = plan.keys[sampleIndex];
        const sample = call.then((outcomes) => {
          const outcome = outcomes[j];
          if (outcome instanceof Error) throw outcome;
          return outcome;
        });
        this.inFlight.set(key, sample);
        const done = () => void this.inFlight.delete(key);
        sample.then(done, done);
        pending[sampleIndex] = sample;
      });
    }
    const settled = await Promise.allSettled(pending);
    const failed = settled.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    // agreement is with THIS request's gold answer: a stored or shared sample may have been asked for without one
    const agreement = (label: string | null) => agreesWithGold(label, plan.item.answer, plan.template.format);
    return {
      samples: settled.map((s) => {
        const sample = (s as PromiseFulfilledResult<RationaleSample>).value;
        return { ...sample, agrees: agreement(sample.label) };
      }),
    };
  }

  /** One teacher call for the missing samples; each outcome is a stored sample or the failure that was recorded. */
  private async fetchSamples(plan: RationalePlan, sampleIndices: number[]): Promise<Array<RationaleSample | TeacherError>> {
    let result: ChatResult;
    try {
      result = await this.client.complete({ ...plan.request, n: sampleIndices.length });
    } catch (err) {
      if (!(err instanceof TeacherError)) throw err;
      for (const sampleIndex of sampleIndices) this.recordFailure(plan, sampleIndex, err, null);
      return sampleIndices.map(() => err);
    }
    return this.ingest(plan, sampleIndices, result);
  }

  /**
   * Stores the answer to a call made for `sampleIndices` (choice j answers sample sampleIndices[j]): good choices
   * become rationales, truncated/filtered/missing ones are recorded failures. Used by the Batch-API path too.
   */
  ingest(plan: RationalePlan, sampleIndices: number[], result: Omit<ChatResult, "attempts"> & { attempts?: number }) {
    const byIndex = new Map<number, ChatChoice>(result.choices.map((c) => [c.index, c]));
    const parts = sampleIndices.length;
    return sampleIndices.map((sampleIndex, j): RationaleSample | TeacherError => {
      const choice = byIndex.get(j);
      const failureKind = choice ? finishFailure(choice.finishReason) : "bad_response";
      if (!choice || failureKind) {
        const err = new TeacherError(
          choice ? `teacher answer unusable: finish_reason "${choice.finishReason}"` : `teacher returned no choice ${j}`,
          failureKind ?? "bad_response",
          502,
          result.attempts ?? 1,
        );
        this.recordFailure(plan, sampleIndex, err, choice?.text ?? null);
        return err;
      }
      const parsed = parseCompletion(choice.text, plan.template.format, plan.item.choices);
      const promptTokens = result.usage ? share(result.usage.promptTokens, parts, j) : null;
      const completionTokens = result.usage ? share(result.usage.completionTokens, parts, j) : null;
      const record = {
        dataset: plan.item.dataset ?? null,
        split: plan.item.split ?? null,
        itemId: plan.item.id ?? null,
        question: plan.item.question,
        choices: plan.item.choices ?? null,
        answer: plan.item.answer ?? null,
        sampleIndex,
        model: plan.request.model,
        template: plan.template.version,
        params: plan.keyParams,
        rationale: parsed.rationale,
        label: parsed.label,
        agrees: agreesWithGold(parsed.label, plan.item.answer, plan.template.format),
        rawCompletion: choice.text,
        promptTokens,
        completionTokens,
        latencyMs: result.latencyMs,
        costUsd: promptTokens === null || completionTokens === null ? null : costUsd(plan.request.model, promptTokens, completionTokens),
        source: "teacher" as const,
        createdAt: Date.now(),
      };
      const { key } = this.store.put(record);
      return sampleOf({ ...record, key }, false);
    });
  }

  private recordFailure(plan: RationalePlan, sampleIndex: number, err: TeacherError, rawCompletion: string | null): void {
    this.store.recordFailure({
      key: plan.keys[sampleIndex],
      dataset: plan.item.dataset ?? null,
      split: plan.item.split ?? null,
      itemId: plan.item.id ?? null,
      question: plan.item.question,
      sampleIndex,
      model: plan.request.model,
      template: plan.template.version,
      params: plan.keyParams,
      kind: err.kind,
      upstreamStatus: err.upstreamStatus ?? null,
      message: err.message,
      rawCompletion,
      attempts: err.attempts,
    });
  }
}
