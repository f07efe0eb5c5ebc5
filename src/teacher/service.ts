/**
 * TeacherService: the one way to get chain-of-thought rationales from the teacher. A stored answer is never requested
 * again (cache key = item identity + model + template version + generation params + sample index), identical requests
 * in flight at the same time share one teacher call, and failures are recorded but never stored as rationales —
 * among them answers the parser refuses (empty, a refusal, no or two labels: src/teacher/parse.ts), kept raw.
 * Structured mode asks for {rationale, answer} JSON (part of the key); a reasoning model's trace is stored apart.
 *
 * n samples use sample indices 0..n-1; the ones not yet stored are requested in ONE call with `n` = how many are
 * missing. The Batch-API path builds its requests with `plan` and feeds the answers back through `ingest`, so both
 * paths store exactly the same records under the same keys.
 *
 * Answers arriving in the same event-loop turn are stored in one SQLite transaction (src/store/group-commit.ts), and
 * a caller's `onStored` runs inside it: a bulk job marks its item done in the very commit that stores the answer.
 */
import type { Database } from "bun:sqlite";
import { getDataset, type AnswerKind } from "../data/registry.ts";
import type { Choice } from "../data/types.ts";
import { GroupCommit } from "../store/group-commit.ts";
import { RationaleStore, rationaleKey, type RationaleRecord } from "../store/rationales.ts";
import { finishFailure, TeacherClient, type ChatChoice, type ChatRequest, type ChatResult } from "./client.ts";
import { addPaid, TeacherError, type PaidUsage } from "./errors.ts";
import { agreesWithGold, answerFormatOf, parseCompletion, structuredSchema } from "./parse.ts";
import { estimateTokens } from "./limits.ts";
import { costUsd, type PriceTier } from "./pricing.ts";
import { STOP_SEQUENCES, templateFor, type AnswerFormat, type PromptOptions, type PromptTemplate } from "./prompts.ts";

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
  /** What kind of answer to read; by default multiple choice with choices, else guessed from the gold answer. */
  format?: AnswerFormat;
}

export interface GenerationParams {
  model?: string;
  temperature?: number;
  maxTokens?: number;
  /** Number of samples (indices 0..n-1); each is cached on its own. */
  n?: number;
  /** Ask for {rationale, answer} JSON (response_format: json_schema); part of the cache key. */
  structured?: boolean;
}

export interface TokenUsage {
  promptTokens: number;
  /** Reasoning included (that is how the APIs bill it). */
  completionTokens: number;
  /** Of completionTokens, the reasoning ones, when the API reports them. */
  reasoningTokens?: number;
}

export interface RationaleSample {
  /** The visible explanation (markdown stripped; "" when a reasoning model showed only its answer). */
  rationale: string;
  /** A reasoning model's trace (reasoning_content or <think>), null when none. */
  reasoning: string | null;
  /** Normalised label: "A".."E" for multiple choice, a canonical number string for math; null when unparseable. */
  label: string | null;
  /** Label equals the gold answer; null when the item has no gold answer. */
  agrees: boolean | null;
  /** True when served from the store without a teacher call. */
  fromStore: boolean;
  /** The cache key (hex SHA-256). */
  key: string;
  sampleIndex: number;
  /** The model requested (part of the cache key). */
  model: string;
  /** The model the API said answered (e.g. a dated snapshot of `model`); null when it said nothing. */
  answeredBy: string | null;
  template: string;
  /** This sample's share of the call's tokens (a call with n>1 is split evenly). */
  usage: TokenUsage | null;
  costUsd: number | null;
}

export interface RationaleRequest {
  item: TeacherItem;
  params?: GenerationParams;
  /** Which template, how many shots, free or label-conditioned (default: the shipped template of the item's format). */
  prompt?: PromptOptions;
}

/** What asking for some items would take (a dry run): nothing is sent, nothing stored. */
export interface CostEstimate {
  items: number;
  /** Items whose every sample is stored already: they cost nothing. */
  cached: number;
  /** Samples that would be requested. */
  samples: number;
  /** Prompt tokens, estimated from characters (≈ 4 per token), of the samples to request. */
  promptTokens: number;
  /** The completion budget (max tokens × samples): an upper bound. */
  completionTokens: number;
  /** At the model's list price (or the batch rate); null when the price of the model is unknown. */
  costUsd: number | null;
  /** The template version the prompts were rendered with (the first item's). */
  template: string;
}

/**
 * Runs once per request when all its samples are at hand, inside a SQLite transaction on `db` (the store's
 * connection): whatever it writes there commits or rolls back together with the samples this request paid for.
 * The transaction may be shared with other requests' writes (group commit), each in a savepoint of its own.
 */
export type OnStored = (samples: RationaleSample[], db: Database) => void;

export interface RationaleOptions {
  /**
   * A job marks its item done (with the tokens and cost paid) here, so that "answer stored" and "item done" are one
   * commit: a crash can never leave a paid answer stored but unaccounted for. If it throws, nothing this request
   * fetched is stored and the request rejects with its error. It is this request's own: a request sharing the
   * teacher call of another (single flight) runs its hook after that call's commit, never inside it.
   */
  onStored?: OnStored;
  /**
   * Called once this request needs the teacher no more: when its own call has returned (before the answers are
   * stored), or at once when it makes none. A bulk runner starts its next call here rather than after the commit.
   */
  onAnswered?: () => void;
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
  /** Structured mode by default (see GenerationParams.structured). */
  structured: boolean;
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
  /** The generation params that are part of the key (and stored as provenance); `structured` only when on. */
  keyParams: { temperature: number; maxTokens: number; structured?: true };
  /** keys[i] is sample i's cache key. */
  keys: string[];
}

/** Evenly split `total` over `parts`, the remainder going to the first ones, so the shares add up exactly. */
function share(total: number, parts: number, index: number): number {
  return Math.floor(total / parts) + (index < total % parts ? 1 : 0);
}

/** What one answer cost, for the failure that refuses it (undefined when the API reported no usage). */
function paidShare(
  model: string,
  promptTokens: number | null,
  completionTokens: number | null,
  reasoningTokens: number | null,
  tier: PriceTier = "standard",
): PaidUsage | undefined {
  if (promptTokens === null || completionTokens === null) return undefined;
  return { promptTokens, completionTokens, reasoningTokens: reasoningTokens ?? 0, costUsd: costUsd(model, promptTokens, completionTokens, tier) ?? 0 };
}

/** What a stored sample or a refused answer of one call cost. */
export function paidFor(outcome: RationaleSample | TeacherError): PaidUsage | undefined {
  if (outcome instanceof TeacherError) return outcome.paid;
  if (!outcome.usage) return undefined;
  const { promptTokens, completionTokens, reasoningTokens = 0 } = outcome.usage;
  return { promptTokens, completionTokens, reasoningTokens, costUsd: outcome.costUsd ?? 0 };
}

function sampleOf(record: RationaleRecord, fromStore: boolean): RationaleSample {
  return {
    rationale: record.rationale,
    reasoning: record.reasoning ?? null,
    label: record.label,
    agrees: record.agrees,
    fromStore,
    key: record.key,
    sampleIndex: record.sampleIndex,
    model: record.model,
    answeredBy: record.answeredBy ?? null,
    template: record.template,
    usage:
      record.promptTokens === null || record.completionTokens === null
        ? null
        : {
            promptTokens: record.promptTokens,
            completionTokens: record.completionTokens,
            ...(record.reasoningTokens === null ? {} : { reasoningTokens: record.reasoningTokens }),
          },
    costUsd: record.costUsd,
  };
}

export class TeacherService {
  readonly store: RationaleStore;
  readonly client: TeacherClient;
  readonly defaults: TeacherDefaults;
  /** Answers arriving together (a bulk job's 64 calls) are stored in one commit. */
  private readonly commits: GroupCommit;
  /** `work` in a transaction (a savepoint when one is open); made once, as bun:sqlite's wrappers are not free. */
  private readonly atomically: <T>(work: () => T) => T;
  /**
   * Single flight: per cache key being fetched right now, the call's promise. It never rejects: it resolves, once
   * the answers are stored (or not), to the teacher failures by key, so waiters know whether to fail or to read.
   */
  private readonly inFlight = new Map<string, Promise<Map<string, TeacherError>>>();
  private readonly templates: Partial<Record<AnswerFormat, PromptTemplate>>;
  private readonly answerKinds = new Map<string, AnswerKind | null>();

  constructor(options: TeacherServiceOptions) {
    this.store = new RationaleStore(options.db);
    this.commits = new GroupCommit(options.db);
    this.atomically = options.db.transaction((work: () => unknown) => work()) as <T>(work: () => T) => T;
    this.client = options.client ?? new TeacherClient();
    this.templates = options.templates ?? {};
    this.defaults = {
      model: this.client.model,
      temperature: 0,
      maxTokens: 256,
      n: 1,
      stop: STOP_SEQUENCES,
      structured: false,
      ...options.defaults,
    };
  }

  plan({ item, params = {}, prompt = {} }: RationaleRequest): RationalePlan {
    const kind = this.answerKindOf(item.dataset);
    const format = prompt.format ?? answerFormatOf(item, kind);
    // a service-wide replacement of a shipped template applies where the request names no template of its own
    const plain = prompt.template === undefined && prompt.shots === undefined && prompt.mode === undefined;
    const template = (plain ? this.templates[format] : undefined) ?? templateFor(item, prompt, kind);
    const model = params.model ?? this.defaults.model;
    const structured = params.structured ?? this.defaults.structured;
    const keyParams: RationalePlan["keyParams"] = {
      temperature: params.temperature ?? this.defaults.temperature,
      maxTokens: params.maxTokens ?? this.defaults.maxTokens,
      // absent when off, so the keys of answers stored before structured mode existed stay the same
      ...(structured ? { structured: true as const } : {}),
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
    const request: ChatRequest = {
      prompt: template.render(item),
      model,
      temperature: keyParams.temperature,
      maxTokens: keyParams.maxTokens,
      n,
      stop: this.defaults.stop,
      ...(structured ? { responseFormat: { name: "rationale_and_answer", schema: structuredSchema(format, item.choices) } } : {}),
    };
    return { item, template, request, keyParams, keys };
  }

  /** Tokens and cost of asking for these requests' missing samples, without asking (`rationales --dry-run`). */
  estimate(requests: RationaleRequest[], tier: PriceTier = "standard"): CostEstimate {
    const estimate: CostEstimate = { items: requests.length, cached: 0, samples: 0, promptTokens: 0, completionTokens: 0, costUsd: 0, template: "" };
    let model = this.defaults.model;
    for (const request of requests) {
      const plan = this.plan(request);
      model = plan.request.model;
      estimate.template ||= plan.template.version;
      const missing = plan.keys.filter((key) => !this.store.get(key)).length;
      if (missing === 0) estimate.cached++;
      const prompt = estimateTokens(plan.request.prompt, 0, 1);
      // one call for all missing samples pays the prompt once; a server that refuses n > 1 makes it once per sample
      estimate.samples += missing;
      estimate.promptTokens += missing > 0 ? prompt * (this.client.sendsSamplesOneByOne(plan.request.model) ? missing : 1) : 0;
      estimate.completionTokens += missing * plan.request.maxTokens;
    }
    estimate.costUsd = costUsd(model, estimate.promptTokens, estimate.completionTokens, tier);
    return estimate;
  }

  /** The registered dataset's answer kind (read once per dataset: a descriptor dataset is a file read); null if unknown. */
  private answerKindOf(dataset: string | undefined): AnswerKind | null {
    if (dataset === undefined) return null;
    let kind = this.answerKinds.get(dataset);
    if (kind === undefined) {
      try {
        kind = getDataset(dataset).answerKind;
      } catch {
        kind = null; // an item naming a dataset the registry does not know: go by its gold answer
      }
      this.answerKinds.set(dataset, kind);
    }
    return kind;
  }

  /**
   * Samples 0..n-1 for the item: from the store where present, otherwise from one teacher call for the missing ones.
   * A sample that an identical request is fetching right now is waited for, never asked twice; it then counts as
   * `fromStore` here (this request paid nothing for it). A teacher failure of that other call is this request's
   * failure too; if the other call failed for its own reasons (its `onStored` threw), this request asks itself.
   */
  async rationales(request: RationaleRequest, options: RationaleOptions = {}): Promise<RationaleResult> {
    const plan = this.plan(request);
    // no await between the last check and registering our own flight below, so no other caller can slip in
    for (let flights = this.flightsOf(plan.keys); flights.length > 0; flights = this.flightsOf(plan.keys)) {
      for (const failures of await Promise.all(flights)) {
        const failure = plan.keys.map((key) => failures.get(key)).find((err) => err !== undefined);
        if (failure) throw failure.withPaid(); // this request paid nothing for another's call
      }
    }
    const samples: RationaleSample[] = [];
    const missing: number[] = [];
    plan.keys.forEach((key, sampleIndex) => {
      const stored = this.store.get(key);
      if (stored) samples[sampleIndex] = this.withAgreement(plan, sampleOf(stored, true));
      else missing.push(sampleIndex);
    });
    const commit = (fresh: RationaleSample[], db: Database) => {
      missing.forEach((sampleIndex, j) => (samples[sampleIndex] = this.withAgreement(plan, fresh[j])));
      options.onStored?.(samples, db);
    };
    if (missing.length > 0) await this.fly(plan, missing, commit, options.onAnswered);
    else {
      options.onAnswered?.();
      if (options.onStored) await this.commits.run(() => commit([], this.store.db));
    }
    return { samples };
  }

  /** The distinct flights fetching any of these keys right now. */
  private flightsOf(keys: string[]): Array<Promise<Map<string, TeacherError>>> {
    const flights = new Set<Promise<Map<string, TeacherError>>>();
    for (const key of keys) {
      const flight = this.inFlight.get(key);
      if (flight) flights.add(flight);
    }
    return [...flights];
  }

  /**
   * One teacher call for the missing samples, registered as the flight of their keys until it settles. Resolves
   * when they are stored (`commit` ran in the same transaction); rejects with the first failure.
   */
  private async fly(plan: RationalePlan, missing: number[], commit: OnStored, answered = () => {}): Promise<void> {
    const keys = missing.map((sampleIndex) => plan.keys[sampleIndex]);
    const failures = new Map<string, TeacherError>();
    let land!: () => void;
    const flight = new Promise<Map<string, TeacherError>>((resolve) => (land = () => resolve(failures)));
    for (const key of keys) this.inFlight.set(key, flight);
    try {
      let result: ChatResult;
      try {
        result = await this.client.complete({ ...plan.request, n: missing.length });
      } catch (err) {
        answered();
        if (!(err instanceof TeacherError)) throw err;
        await this.commits.run(() => missing.forEach((sampleIndex) => this.recordFailure(plan, sampleIndex, err, null)));
        for (const key of keys) failures.set(key, err);
        throw err;
      }
      answered();
      const outcomes = await this.commits.run(() => this.ingest(plan, missing, result, { onStored: commit }));
      outcomes.forEach((outcome, j) => outcome instanceof TeacherError && failures.set(keys[j], outcome));
      const failure = outcomes.find((outcome) => outcome instanceof TeacherError);
      // the whole call was paid, good samples (stored, but their item fails) and refused ones alike
      if (failure) throw failure.withPaid(outcomes.map(paidFor).reduce(addPaid));
    } finally {
      for (const key of keys) this.inFlight.delete(key);
      land();
    }
  }

  /** The sample with agreement against THIS request's gold (a stored or shared one may have been asked without). */
  private withAgreement(plan: RationalePlan, sample: RationaleSample): RationaleSample {
    return { ...sample, agrees: agreesWithGold(sample.label, plan.item.answer, plan.template.format) };
  }

  /**
   * Stores the answer to a call made for `sampleIndices` (choice j answers sample sampleIndices[j]): good choices
   * become rationales, truncated/filtered/missing ones are recorded failures — all in one transaction, together
   * with `onStored` when every choice was good (see RationaleOptions). Used by the Batch-API path too.
   */
  ingest(
    plan: RationalePlan,
    sampleIndices: number[],
    result: Omit<ChatResult, "attempts"> & { attempts?: number; tier?: PriceTier },
    options: RationaleOptions = {},
  ): Array<RationaleSample | TeacherError> {
    const byIndex = new Map<number, ChatChoice>(result.choices.map((c) => [c.index, c]));
    const parts = sampleIndices.length;
    const store = (): Array<RationaleSample | TeacherError> => {
      const outcomes = sampleIndices.map((sampleIndex, j): RationaleSample | TeacherError => {
        const choice = byIndex.get(j);
        if (choice?.error) {
          // this sample's own request failed (asked one by one): recorded as such, nothing to pay for it
          this.recordFailure(plan, sampleIndex, choice.error, null);
          return choice.error;
        }
        const failureKind = choice ? finishFailure(choice.finishReason) : "bad_response";
        // a sample asked on its own carries its own usage; samples of one call share the call's evenly
        const own = choice?.usage !== undefined;
        const usage = own ? choice!.usage! : result.usage;
        const at = own ? 0 : j;
        const of = own ? 1 : parts;
        const promptTokens = usage ? share(usage.promptTokens, of, at) : null;
        const completionTokens = usage ? share(usage.completionTokens, of, at) : null;
        const reasoningTokens = usage?.reasoningTokens === undefined ? null : share(usage.reasoningTokens, of, at);
        const tier = result.tier ?? "standard";
        const answeredBy = result.model || null;
        if (!choice || failureKind) {
          const err = new TeacherError(
            choice ? `teacher answer unusable: finish_reason "${choice.finishReason}"` : `teacher returned no choice ${j}`,
            failureKind ?? "bad_response",
            502,
            result.attempts ?? 1,
          );
          this.recordFailure(plan, sampleIndex, err, choice?.text ?? null);
          err.paid = paidShare(answeredBy ?? plan.request.model, promptTokens, completionTokens, reasoningTokens, tier);
          return err;
        }
        return this.storeChoice(plan, sampleIndex, choice, {
          promptTokens,
          completionTokens,
          reasoningTokens,
          latencyMs: result.latencyMs,
          attempts: result.attempts ?? 1,
          answeredBy,
          tier,
        });
      });
      const samples = outcomes.filter((outcome): outcome is RationaleSample => !(outcome instanceof TeacherError));
      if (samples.length === outcomes.length) options.onStored?.(samples, this.store.db);
      return outcomes;
    };
    return this.atomically(store);
  }

  /**
   * One answer stored under sample `sampleIndex`'s key — or, when the parser refuses it (empty, a refusal, no or two
   * labels, no explanation), recorded as a failure with its raw text and never stored as a rationale.
   */
  private storeChoice(
    plan: RationalePlan,
    sampleIndex: number,
    choice: ChatChoice,
    call: {
      promptTokens: number | null;
      completionTokens: number | null;
      reasoningTokens: number | null;
      latencyMs: number;
      attempts: number;
      /** The model the API said answered: stored as provenance, and what the answer is priced as. */
      answeredBy: string | null;
      tier: PriceTier;
    },
  ): RationaleSample | TeacherError {
    const text = choice.text;
    const parsed = parseCompletion(text, plan.template.format, plan.item.choices, { reasoning: choice.reasoning, refusal: choice.refusal });
    if (parsed.failure) {
      const err = new TeacherError(`teacher answer unusable (${parsed.failure.reason}): ${parsed.failure.detail}`, parsed.failure.reason, 502, call.attempts);
      this.recordFailure(plan, sampleIndex, err, choice.refusal && !text ? choice.refusal : text, parsed.reasoning);
      err.paid = paidShare(call.answeredBy ?? plan.request.model, call.promptTokens, call.completionTokens, call.reasoningTokens, call.tier);
      return err;
    }
    const { promptTokens, completionTokens } = call;
    const record: RationaleRecord = {
      key: plan.keys[sampleIndex],
      dataset: plan.item.dataset ?? null,
      split: plan.item.split ?? null,
      itemId: plan.item.id ?? null,
      question: plan.item.question,
      choices: plan.item.choices ?? null,
      answer: plan.item.answer ?? null,
      sampleIndex,
      model: plan.request.model,
      answeredBy: call.answeredBy,
      template: plan.template.version,
      params: plan.keyParams,
      rationale: parsed.rationale,
      reasoning: parsed.reasoning,
      label: parsed.label,
      agrees: agreesWithGold(parsed.label, plan.item.answer, plan.template.format),
      rawCompletion: text,
      promptTokens,
      completionTokens,
      reasoningTokens: call.reasoningTokens,
      latencyMs: call.latencyMs,
      // priced as the model that answered (a snapshot has its base model's price), at the tier it was asked on
      costUsd:
        promptTokens === null || completionTokens === null
          ? null
          : costUsd(call.answeredBy ?? plan.request.model, promptTokens, completionTokens, call.tier),
      source: "teacher",
      createdAt: Date.now(),
    };
    this.store.putKeyed(record);
    return sampleOf(record, false);
  }

  /** Records a failed sample (never served as a rationale); the Batch-API path records its failed lines here too. */
  recordFailure(plan: RationalePlan, sampleIndex: number, err: TeacherError, rawCompletion: string | null, reasoning: string | null = null): void {
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
      reasoning,
      attempts: err.attempts,
    });
  }
}
