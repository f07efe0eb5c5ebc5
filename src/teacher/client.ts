/**
 * The teacher client: chat completions through the official `openai` SDK against any OpenAI-compatible endpoint
 * (OPENAI_BASE_URL / OPENAI_API_KEY / TEACHER_MODEL, overridable by options). The SDK's own retries are off so the
 * policy here is the only one: exponential backoff with full jitter on 429, 5xx, timeouts, connection errors and
 * unreadable answers, honouring Retry-After / retry-after-ms; every attempt passes through the limiter.
 *
 * The API key goes to the SDK and nowhere else: it is not a field of this object, and error and event messages are
 * scrubbed of it (and of anything key-like the API echoes back).
 */
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from "openai";
import { TeacherError, type TeacherFailureKind } from "./errors.ts";
import { estimateTokens, Limiter, realClock, type Clock, type LimitOptions } from "./limits.ts";

export interface ChatRequest {
  prompt: string;
  model: string;
  temperature: number;
  maxTokens: number;
  n: number;
  stop?: string[];
  /** Structured mode: ask for JSON matching this schema (`response_format: json_schema`). */
  responseFormat?: { name: string; schema: Record<string, unknown> };
}

export interface ChatChoice {
  index: number;
  /** The visible answer (`message.content`). */
  text: string;
  /** "stop", "length", "content_filter", … as the API reported it. */
  finishReason: string;
  /** A reasoning model's trace, sent beside the content (`reasoning_content`, or `reasoning`); null when absent. */
  reasoning: string | null;
  /** The model declined (`message.refusal`, structured outputs); null when it did not. */
  refusal: string | null;
  /** Sent one by one (a server that refuses n > 1): this sample's own tokens, and its failure if it had one. */
  usage?: ChatUsage | null;
  error?: TeacherError;
}

export interface ChatUsage {
  promptTokens: number;
  /** All completion tokens, reasoning included: what the API bills as output. */
  completionTokens: number;
  /** usage.completion_tokens_details.reasoning_tokens, when the API reports it. */
  reasoningTokens?: number;
}

export interface ChatResult {
  choices: ChatChoice[];
  usage: ChatUsage | null;
  /** The model the API says answered (may be a dated snapshot of the requested one). */
  model: string;
  /** Wall time of the successful attempt. */
  latencyMs: number;
  attempts: number;
  /** The request was sent with its response_format (false when there was none, or the server refused it). */
  structured?: boolean;
}

export interface RetryPolicy {
  /** Attempts in total, the first included (default 5). */
  maxAttempts: number;
  /** Backoff cap for attempt k is min(maxDelayMs, baseDelayMs * 2^k); the wait is uniform in [0, cap] (full jitter). */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Longest Retry-After that is honoured as is; longer ones are clamped to it (default 120 s). */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 500, maxDelayMs: 30_000, maxRetryAfterMs: 120_000 };

export type ClientEvent =
  | { type: "retry"; attempt: number; delayMs: number; kind: TeacherFailureKind; status?: number; message: string }
  | { type: "response"; attempt: number; latencyMs: number; status: number }
  | { type: "structured_unsupported"; status?: number; message: string }
  /** The server refused a request shape; from now on the client sends what it accepts for this model. */
  | { type: "fallback"; model: string; what: "one-sample-per-request" | "max_completion_tokens"; message: string };

export interface TeacherClientOptions {
  baseURL?: string;
  apiKey?: string;
  /** Default model when a request names none. */
  model?: string;
  /** Per-attempt request timeout (default 60 s). */
  timeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  limits?: Partial<LimitOptions>;
  /** A limiter shared with other clients (overrides `limits`). */
  limiter?: Limiter;
  clock?: Clock;
  /** Uniform [0, 1) for the jitter (tests pin it). */
  random?: () => number;
  onEvent?: (event: ClientEvent) => void;
  /** Where the one-time notice goes when the server refuses response_format (default console.warn). */
  warn?: (message: string) => void;
}

export interface TeacherClientConfig {
  baseURL: string;
  model: string;
}

/** Settings from the environment, overridden by explicit options. */
export function resolveClientConfig(options: TeacherClientOptions = {}, env = process.env) {
  return {
    baseURL: options.baseURL ?? env.OPENAI_BASE_URL ?? "https://api.openai.com/v1",
    apiKey: options.apiKey ?? env.OPENAI_API_KEY ?? "",
    model: options.model ?? env.TEACHER_MODEL ?? "gpt-4o-mini",
  };
}

/** A wait in ms from Retry-After (seconds or HTTP date) or retry-after-ms; null when absent or unreadable. */
export function retryAfterMs(headers: Headers | undefined, nowEpochMs = Date.now()): number | null {
  if (!headers) return null;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "" && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const after = headers.get("retry-after");
  if (after === null || after.trim() === "") return null;
  if (/^\s*\d+(\.\d+)?\s*$/.test(after)) return Number(after) * 1000;
  const date = Date.parse(after);
  return Number.isNaN(date) ? null : Math.max(0, date - nowEpochMs);
}

interface Classified {
  kind: TeacherFailureKind;
  retryable: boolean;
  status?: number;
  retryAfterMs: number | null;
  message: string;
}

/** Anything that looks like an API key (the real API echoes rejected keys, partly masked) is cut out of messages. */
export function redactSecrets(message: string, apiKey = ""): string {
  const masked = apiKey.length >= 8 ? message.replaceAll(apiKey, "[REDACTED]") : message;
  return masked.replace(/\b(sk|key|api[-_]?key)[-_][\w*.-]{4,}/gi, "$1-[REDACTED]");
}

/** What went wrong in one attempt, and whether another attempt could help. */
export function classifyError(err: unknown): Classified {
  if (err instanceof TeacherError) {
    return { kind: err.kind, retryable: err.kind === "bad_response", retryAfterMs: null, message: err.message };
  }
  if (err instanceof APIConnectionTimeoutError) {
    return { kind: "timeout", retryable: true, retryAfterMs: null, message: "request timed out" };
  }
  if (err instanceof APIConnectionError) {
    return { kind: "connection", retryable: true, retryAfterMs: null, message: `connection failed: ${err.message}` };
  }
  if (err instanceof APIError && err.status !== undefined) {
    const status = err.status;
    const wait = retryAfterMs(err.headers);
    if (status === 429) return { kind: "rate_limited", retryable: true, status, retryAfterMs: wait, message: err.message };
    if (status === 408) return { kind: "timeout", retryable: true, status, retryAfterMs: wait, message: err.message };
    if (status >= 500) return { kind: "upstream", retryable: true, status, retryAfterMs: wait, message: err.message };
    if (status === 400 && CONTEXT_OVERFLOW.test(err.message)) {
      const message = `the prompt is longer than the teacher's context window (${err.message}); use a shorter template: fewer shots (--shots 0 is zero-shot) or a --template file with shorter exemplars`;
      return { kind: "context_length", retryable: false, status, retryAfterMs: null, message };
    }
    return { kind: "upstream", retryable: false, status, retryAfterMs: null, message: err.message };
  }
  if (err instanceof SyntaxError) {
    return { kind: "bad_response", retryable: true, retryAfterMs: null, message: `unreadable response: ${err.message}` };
  }
  throw err; // a bug, not a teacher failure
}

/** A 400 saying the prompt does not fit: OpenAI, vLLM, llama.cpp and Ollama word it differently. */
const CONTEXT_OVERFLOW = /context[_ ]length|context window|maximum context|context size|too many tokens|prompt is too long|exceeds? the (available )?context/i;
/** A 400 saying the model takes max_completion_tokens and no temperature/stop (OpenAI reasoning models). */
const REASONING_ONLY = /max_completion_tokens|'max_tokens'|'temperature'/i;

/** The HTTP status our own API should answer for a teacher failure. */
export function statusFor(kind: TeacherFailureKind): 422 | 502 | 503 | 504 {
  if (kind === "context_length") return 422;
  if (kind === "rate_limited" || kind === "connection") return 503;
  if (kind === "timeout") return 504;
  return 502;
}

/** The finish reasons that make a choice a failure rather than a rationale. */
export function finishFailure(finishReason: string): TeacherFailureKind | null {
  if (finishReason === "length") return "truncated";
  if (finishReason === "content_filter") return "content_filter";
  return null;
}

function text(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}

/** The choices of a chat.completion body (online or from a batch output file), reasoning and refusal included. */
export function readChoices(raw: unknown): ChatChoice[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    throw new TeacherError("teacher answered without choices", "bad_response", 502, 1);
  }
  type RawChoice = { index?: unknown; finish_reason?: unknown; message?: Record<string, unknown> };
  return (raw as RawChoice[]).map((c, i) => ({
    index: typeof c?.index === "number" ? c.index : i,
    text: typeof c?.message?.content === "string" ? c.message.content : "",
    finishReason: String(c?.finish_reason ?? "stop"),
    // DeepSeek and vLLM say reasoning_content; OpenRouter and newer vLLM/Ollama say reasoning
    reasoning: text(c?.message?.reasoning_content) ?? text(c?.message?.reasoning),
    refusal: text(c?.message?.refusal),
  }));
}

/** `usage` as the API reports it (reasoning tokens are part of completion_tokens, priced as output); null if absent. */
export function readUsage(raw: unknown): ChatUsage | null {
  const u = raw as { prompt_tokens?: unknown; completion_tokens?: unknown; completion_tokens_details?: { reasoning_tokens?: unknown } } | null;
  if (!u || typeof u.prompt_tokens !== "number" || typeof u.completion_tokens !== "number") return null;
  const reasoning = u.completion_tokens_details?.reasoning_tokens;
  return {
    promptTokens: u.prompt_tokens,
    completionTokens: u.completion_tokens,
    ...(typeof reasoning === "number" ? { reasoningTokens: reasoning } : {}),
  };
}

/** OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 …) take max_completion_tokens and reject temperature and stop. */
export function isReasoningModel(model: string): boolean {
  return /^(o\d+|gpt-5)([-.]|$)/.test(model);
}

/**
 * The chat-completions body for a request, the same fields online and in a Batch-API input file; a reasoning model
 * (`reasoning`, by default told by its name) gets max_completion_tokens and no temperature or stop.
 */
export function chatBody(request: ChatRequest, options: { n?: number; structured?: boolean; reasoning?: boolean } = {}): Record<string, unknown> {
  const format = options.structured === false ? undefined : request.responseFormat;
  const reasoning = options.reasoning ?? isReasoningModel(request.model);
  return {
    model: request.model,
    messages: [{ role: "user", content: request.prompt }],
    ...(reasoning ? { max_completion_tokens: request.maxTokens } : { temperature: request.temperature, max_tokens: request.maxTokens }),
    n: options.n ?? request.n,
    ...(request.stop?.length && !reasoning ? { stop: request.stop } : {}),
    ...(format ? { response_format: { type: "json_schema", json_schema: { name: format.name, strict: true, schema: format.schema } } } : {}),
  };
}

/** A 400/422 that names response_format: the server does not do structured outputs (rather than a bad request). */
export function refusesResponseFormat(err: unknown): boolean {
  if (!(err instanceof APIError) || (err.status !== 400 && err.status !== 422 && err.status !== 501)) return false;
  const said = `${err.message} ${JSON.stringify(err.error ?? "")}`;
  return /response_format|json_schema|structured output|guided_json|grammar/i.test(said);
}

export class TeacherClient {
  readonly baseURL: string;
  readonly model: string;
  readonly limiter: Limiter;
  private readonly sdk: OpenAI;
  private readonly retry: RetryPolicy;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly onEvent?: (event: ClientEvent) => void;
  private readonly redact: (message: string) => string;
  private readonly warn: (message: string) => void;
  /** Set once the server refused response_format: later structured requests go as plain text, said once. */
  private structuredRefused = false;

  constructor(options: TeacherClientOptions = {}) {
    const config = resolveClientConfig(options);
    this.baseURL = config.baseURL;
    this.model = config.model;
    this.clock = options.clock ?? realClock;
    this.retry = { ...DEFAULT_RETRY, ...options.retry };
    this.random = options.random ?? Math.random;
    this.onEvent = options.onEvent;
    this.warn = options.warn ?? ((message) => console.warn(message));
    this.limiter = options.limiter ?? new Limiter(options.limits, this.clock);
    this.redact = (message) => redactSecrets(message, config.apiKey);
    this.sdk = new OpenAI({
      baseURL: config.baseURL,
      // a local or fake endpoint may need no key; the SDK insists on a string
      apiKey: config.apiKey || "none",
      maxRetries: 0,
      timeout: options.timeoutMs ?? 60_000,
    });
  }

  /** Backoff before attempt `attempt + 1`: the server's Retry-After if it sent one, else full jitter. */
  backoffMs(attempt: number, serverWait: number | null): number {
    if (serverWait !== null) return Math.min(serverWait, this.retry.maxRetryAfterMs);
    const cap = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    return Math.floor(this.random() * cap);
  }

  /** Models whose server refused n > 1: their samples are asked one request each. */
  private readonly oneSampleModels = new Set<string>();
  /** Models that refused max_tokens/temperature: asked the reasoning-model way. */
  private readonly reasoningModels = new Set<string>();

  sendsSamplesOneByOne(model: string): boolean {
    return this.oneSampleModels.has(model);
  }

  /**
   * One chat completion of `n` samples, retried per the policy; throws TeacherError when it gives up. A server that
   * answers HTTP 400 to n > 1 (many OpenAI-compatible ones do) gets n requests of one sample instead, from then on
   * for that model: each sample keeps its own tokens, and its own failure if it fails.
   */
  async complete(request: ChatRequest): Promise<ChatResult> {
    if (request.n > 1 && this.oneSampleModels.has(request.model)) return this.oneByOne(request);
    try {
      return await this.send(request);
    } catch (err) {
      if (!(request.n > 1 && err instanceof TeacherError && err.upstreamStatus === 400 && err.kind === "upstream")) throw err;
      this.oneSampleModels.add(request.model);
      this.onEvent?.({ type: "fallback", model: request.model, what: "one-sample-per-request", message: err.message });
      return this.oneByOne(request);
    }
  }

  private async oneByOne(request: ChatRequest): Promise<ChatResult> {
    const settled = await Promise.allSettled(Array.from({ length: request.n }, () => this.send({ ...request, n: 1 })));
    const answered = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    if (answered.length === 0) throw (settled[0] as PromiseRejectedResult).reason;
    const choices = settled.map((s, index): ChatChoice => {
      if (s.status === "rejected") {
        if (!(s.reason instanceof TeacherError)) throw s.reason;
        return { index, text: "", finishReason: "error", reasoning: null, refusal: null, usage: null, error: s.reason };
      }
      return { ...s.value.choices[0], index, usage: s.value.usage };
    });
    const usage = answered.every((r) => r.usage)
      ? answered.reduce<ChatUsage>(
          (sum, r) => ({
            promptTokens: sum.promptTokens + r.usage!.promptTokens,
            completionTokens: sum.completionTokens + r.usage!.completionTokens,
            reasoningTokens: (sum.reasoningTokens ?? 0) + (r.usage!.reasoningTokens ?? 0),
          }),
          { promptTokens: 0, completionTokens: 0, reasoningTokens: 0 },
        )
      : null;
    return {
      choices,
      usage,
      model: answered[0].model,
      latencyMs: Math.max(...answered.map((r) => r.latencyMs)),
      attempts: Math.max(...answered.map((r) => r.attempts)),
      structured: answered[0].structured,
    };
  }

  /** One request; a model that turns out to take only reasoning-model parameters is asked again that way. */
  private async send(request: ChatRequest): Promise<ChatResult> {
    const reasoning = isReasoningModel(request.model) || this.reasoningModels.has(request.model);
    try {
      return await this.attempt(request, reasoning);
    } catch (err) {
      if (reasoning || !(err instanceof TeacherError && err.upstreamStatus === 400 && REASONING_ONLY.test(err.message))) throw err;
      this.reasoningModels.add(request.model);
      this.onEvent?.({ type: "fallback", model: request.model, what: "max_completion_tokens", message: err.message });
      return await this.attempt(request, true);
    }
  }

  private async attempt(request: ChatRequest, reasoning: boolean): Promise<ChatResult> {
    const estimate = estimateTokens(request.prompt, request.maxTokens, request.n);
    for (let attempt = 1; ; attempt++) {
      const permit = await this.limiter.acquire(estimate);
      const started = this.clock.now();
      let failure: Classified;
      const body = chatBody(request, { structured: !this.structuredRefused, reasoning });
      const structured = "response_format" in body;
      try {
        const response = await this.sdk.chat.completions.create(body as never as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
        const choices = readChoices(response?.choices);
        const usage = readUsage(response.usage);
        permit.release(usage ? usage.promptTokens + usage.completionTokens : undefined);
        const latencyMs = this.clock.now() - started;
        this.onEvent?.({ type: "response", attempt, latencyMs, status: 200 });
        return { choices, usage, model: response.model ?? request.model, latencyMs, attempts: attempt, structured };
      } catch (err) {
        permit.release();
        if (structured && refusesResponseFormat(err)) {
          // not a failed attempt: the same request again, as plain text the text parser reads; said once per client
          if (!this.structuredRefused) {
            this.structuredRefused = true;
            const message = this.redact((err as Error).message);
            this.onEvent?.({ type: "structured_unsupported", status: (err as APIError).status, message });
            this.warn(`cot-distill: the teacher at ${this.baseURL} refuses response_format (${message}); structured mode falls back to plain-text answers read by the text parser`);
          }
          attempt--;
          continue;
        }
        failure = classifyError(err);
        failure.message = this.redact(failure.message);
      }
      if (failure.kind === "rate_limited" && failure.retryAfterMs !== null) {
        this.limiter.pauseUntil(this.clock.now() + Math.min(failure.retryAfterMs, this.retry.maxRetryAfterMs));
      }
      if (!failure.retryable || attempt >= this.retry.maxAttempts) {
        const what = failure.retryable ? `gave up after ${attempt} attempts` : "not retried";
        throw new TeacherError(
          `teacher ${failure.kind} (${what}): ${failure.message}`,
          failure.kind,
          statusFor(failure.kind),
          attempt,
          failure.status,
        );
      }
      const delayMs = this.backoffMs(attempt, failure.retryAfterMs);
      this.onEvent?.({ type: "retry", attempt, delayMs, kind: failure.kind, status: failure.status, message: failure.message });
      await this.clock.sleep(delayMs);
    }
  }
}
