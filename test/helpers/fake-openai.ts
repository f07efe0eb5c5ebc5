/**
 * A fault-injecting OpenAI-compatible server on 127.0.0.1 for tests: it speaks the real wire format of
 * POST /v1/chat/completions and can be scripted per request to be slow, rate-limit (429 + Retry-After), fail (5xx),
 * hang, answer malformed JSON, truncate (finish_reason "length") or refuse (finish_reason "content_filter").
 * Healthy answers are deterministic CoT-looking completions derived from the last question of the prompt.
 *
 * Other routes (e.g. /v1/files, /v1/batches for Batch-API tests) are mounted through `extend` without editing this file.
 */
import { Hono } from "hono";

export type Behaviour =
  | { kind: "ok"; latencyMs?: number; content?: string }
  | { kind: "rate_limit"; retryAfter?: string; retryAfterMs?: string }
  | { kind: "error"; status?: number; retryAfter?: string }
  | { kind: "hang" }
  | { kind: "malformed" }
  | { kind: "truncated" }
  | { kind: "content_filter" }
  /** Answers that are no rationale, with finish_reason "stop": empty content, no answer, a refusal. */
  | { kind: "empty" }
  | { kind: "no_label" }
  | { kind: "refusal" };

/**
 * How the fake teacher writes a healthy answer, in the ways real models do: the PaLM few-shot phrasing, an
 * "Answer: X" line, markdown, the answer first, JSON when response_format asks for it (else PaLM text), a separate
 * reasoning_content (DeepSeek/vLLM) or a <think> block (R1-style templates) before the explanation.
 */
export type AnswerStyle = "palm" | "answer-colon" | "markdown" | "label-first" | "json" | "reasoning_content" | "think";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatCompletionBody {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  max_tokens?: number;
  max_completion_tokens?: number;
  n?: number;
  stop?: string | string[];
  response_format?: { type: string; json_schema?: { name: string; strict?: boolean; schema: Record<string, unknown> } };
}

export interface RecordedRequest {
  /** 1-based order of arrival across all chat requests. */
  number: number;
  body: ChatCompletionBody;
  /** The Authorization header matched the expected key (the key itself is never recorded). */
  authorized: boolean;
  receivedAt: number;
  behaviour: Behaviour["kind"];
}

export interface FakeOpenAIOptions {
  /** When set, requests without `Authorization: Bearer <apiKey>` get 401. */
  apiKey?: string;
  /** Behaviour when the script is empty (default: a healthy answer). */
  fallback?: (request: RecordedRequest) => Behaviour;
  /** Mount extra routes (they are matched before the fallback 404). */
  extend?: (app: Hono, fake: FakeOpenAI) => void;
  /** The answer the fake teacher gives for a question (default: derived deterministically from the text). */
  answerFor?: (question: string, choiceLabels: string[], sampleIndex: number) => string;
  /** Like llama.cpp's server and others: n > 1 is refused with HTTP 400 (for the models matching, if a RegExp). */
  refuseMultipleSamples?: boolean | RegExp;
  /** A small context window (tokens as `countTokens` counts them): longer prompts get HTTP 400, as vLLM answers. */
  contextWindow?: number;
  /** Models that behave like OpenAI's reasoning models: max_tokens or temperature is refused with HTTP 400. */
  reasoningModels?: RegExp;
  /** The model the response names (a dated snapshot …; default: the requested one). */
  answeredAs?: (model: string) => string;
  /** Port on 127.0.0.1 (default: any free one). */
  port?: number;
  /** How healthy answers are written (default "palm"). */
  style?: AnswerStyle;
  /** Answer any request carrying response_format with a 400, as servers without structured outputs do. */
  refuseResponseFormat?: boolean;
}

export interface FakeOpenAI {
  /** e.g. "http://127.0.0.1:41234/v1" — what OPENAI_BASE_URL would be. */
  baseURL: string;
  app: Hono;
  /** Every chat request received, in order of arrival. */
  requests: RecordedRequest[];
  /** Requests currently being answered (hanging ones included); `maxInFlight` is the high-water mark. */
  inFlight: number;
  maxInFlight: number;
  /** Queue behaviours for the next chat requests, in order. */
  script(...behaviours: Behaviour[]): void;
  stop(): Promise<void>;
}

/** The question being asked: the text after the last "Q:" of the last user message. */
export function lastQuestion(body: ChatCompletionBody): string {
  const text = body.messages.filter((m) => m.role === "user").at(-1)?.content ?? "";
  const at = text.lastIndexOf("Q:");
  return (at >= 0 ? text.slice(at + 2) : text).replace(/\n?A:\s*$/, "").trim();
}

function stableHash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** "(a)".."(e)" labels offered in the question, upper-cased. */
function choiceLabels(question: string): string[] {
  return [...question.matchAll(/\(([a-z])\)/g)].map((m) => m[1].toUpperCase());
}

/** Multiple choice: a choice picked by hash; math: the sum of the numbers in the question. */
export function defaultAnswer(question: string, labels: string[]): string {
  if (labels.length > 0) return labels[stableHash(question) % labels.length];
  const numbers = [...question.matchAll(/\d+(?:\.\d+)?/g)].map((m) => Number(m[0]));
  return String(numbers.reduce((a, b) => a + b, 0));
}

/** A completion in the style of the few-shot exemplars, different per sample index so n>1 gives distinct texts. */
export function cotCompletion(question: string, sampleIndex: number, answerFor: NonNullable<FakeOpenAIOptions["answerFor"]> = defaultAnswer): string {
  const labels = choiceLabels(question);
  const answer = answerFor(question, labels, sampleIndex);
  const stem = question.split("\n")[0].slice(0, 60);
  const shown = labels.length > 0 ? `(${answer.toLowerCase()})` : answer;
  return `The question asks: ${stem}. Thinking step ${sampleIndex + 1}, the best fit is ${shown}. So the answer is ${shown}.`;
}

/** Whitespace-separated pieces: a crude but deterministic stand-in for a tokenizer in `usage`. */
export function countTokens(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/** The choice texts offered in the question ("Answer Choices: (a) desert (b) sea"), by upper-case label. */
function choiceTexts(question: string): Map<string, string> {
  const line = question.split("\n").find((l) => l.startsWith("Answer Choices:")) ?? "";
  return new Map([...line.matchAll(/\(([a-z])\)\s*([^(]*)/g)].map((m) => [m[1].toUpperCase(), m[2].trim()]));
}

/** One healthy answer in `style`: the visible content, and the reasoning sent beside it (reasoning models). */
export function styledCompletion(
  style: AnswerStyle,
  question: string,
  sampleIndex: number,
  options: { answerFor?: FakeOpenAIOptions["answerFor"]; json?: boolean } = {},
): { content: string; reasoning: string | null } {
  const labels = choiceLabels(question);
  const answer = (options.answerFor ?? defaultAnswer)(question, labels, sampleIndex);
  const stem = question.split("\n")[0].slice(0, 60);
  const why = `The question asks: ${stem}. Thinking step ${sampleIndex + 1}, this fits best.`;
  const mc = labels.length > 0;
  const shown = mc ? `(${answer})` : answer;
  const text = mc ? choiceTexts(question).get(answer) ?? "" : "";
  switch (style) {
    case "palm":
      return { content: cotCompletion(question, sampleIndex, options.answerFor), reasoning: null };
    case "answer-colon":
      return { content: `${why}\n\nAnswer: ${mc ? answer : answer}`, reasoning: null };
    case "markdown":
      return { content: `**Reasoning:**\n- ${why}\n\n**Answer:** ${shown} ${text}`.trimEnd(), reasoning: null };
    case "label-first":
      return { content: `The answer is ${shown} because ${why.charAt(0).toLowerCase()}${why.slice(1)}`, reasoning: null };
    case "json":
      return options.json
        ? { content: JSON.stringify({ rationale: why, answer: mc ? answer : Number(answer) }), reasoning: null }
        : { content: cotCompletion(question, sampleIndex, options.answerFor), reasoning: null };
    case "reasoning_content":
      return { content: `${why} So the answer is ${shown}.`, reasoning: `Let me think. Step ${sampleIndex + 1}: ${stem}... ${shown} it is.` };
    case "think":
      return { content: `<think>\nLet me think. Step ${sampleIndex + 1}: ${stem}... ${shown} it is.\n</think>\n\n${why}\n\n**Answer:** ${shown}`, reasoning: null };
  }
}

/** The reasoning tokens of an answer: those of its reasoning_content and of its <think> block. */
function reasoningTokensOf(content: string, reasoning: string | null): number {
  const think = /<think>([\s\S]*?)<\/think>/.exec(content)?.[1] ?? "";
  return countTokens(reasoning ?? "") + countTokens(think);
}

/** The full chat.completion object for `body`, as the real API returns it. */
export function chatCompletionFor(
  body: ChatCompletionBody,
  finishReason: "stop" | "length" | "content_filter" = "stop",
  answerFor?: FakeOpenAIOptions["answerFor"],
  content?: string,
  style: AnswerStyle = "palm",
) {
  const question = lastQuestion(body);
  const n = body.n ?? 1;
  const json = body.response_format?.type === "json_schema";
  const choices = Array.from({ length: n }, (_, index) => {
    const styled = content === undefined ? styledCompletion(style, question, index, { answerFor, json }) : { content, reasoning: null };
    let text = styled.content;
    if (finishReason === "length") text = text.slice(0, Math.max(1, Math.floor(text.length / 3)));
    if (finishReason === "content_filter") text = "";
    const message: Record<string, unknown> = { role: "assistant", content: text, refusal: null };
    if (styled.reasoning !== null) message.reasoning_content = styled.reasoning;
    return { index, message, logprobs: null, finish_reason: finishReason, reasoningTokens: reasoningTokensOf(text, styled.reasoning) };
  });
  const promptTokens = countTokens(body.messages.map((m) => m.content).join("\n"));
  // as the real API counts: completion_tokens include the reasoning ones, which are also reported on their own
  const reasoningTokens = choices.reduce((sum, c) => sum + c.reasoningTokens, 0);
  const completionTokens = choices.reduce((sum, c) => sum + countTokens(String(c.message.content)), 0) + choices.reduce((sum, c) => sum + countTokens(String(c.message.reasoning_content ?? "")), 0);
  return {
    id: `chatcmpl-fake-${stableHash(question + n).toString(16)}`,
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model: body.model,
    choices: choices.map(({ reasoningTokens: _r, ...choice }) => choice),
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
      completion_tokens_details: { reasoning_tokens: reasoningTokens },
    },
    system_fingerprint: "fp_fake",
  };
}

function errorBody(message: string, type: string) {
  return { error: { message, type, param: null, code: null } };
}

export async function startFakeOpenAI(options: FakeOpenAIOptions = {}): Promise<FakeOpenAI> {
  const queue: Behaviour[] = [];
  const hanging = new Set<() => void>();
  const app = new Hono();
  const fake: FakeOpenAI = {
    baseURL: "",
    app,
    requests: [],
    inFlight: 0,
    maxInFlight: 0,
    script: (...behaviours) => void queue.push(...behaviours),
    stop: async () => {
      for (const release of hanging) release();
      server.stop(true);
    },
  };

  async function answer(body: ChatCompletionBody, behaviour: Behaviour, signal: AbortSignal): Promise<Response> {
    switch (behaviour.kind) {
      case "ok": {
        if (behaviour.latencyMs) await Bun.sleep(behaviour.latencyMs);
        const completion = chatCompletionFor(body, "stop", options.answerFor, behaviour.content, options.style);
        return Response.json(options.answeredAs ? { ...completion, model: options.answeredAs(body.model) } : completion);
      }
      case "empty":
        return Response.json(chatCompletionFor(body, "stop", options.answerFor, ""));
      case "no_label":
        return Response.json(chatCompletionFor(body, "stop", options.answerFor, "Gulls are interesting birds with many habits."));
      case "refusal":
        return Response.json(chatCompletionFor(body, "stop", options.answerFor, "I'm sorry, but I can't help with that request."));
      case "truncated":
        return Response.json(chatCompletionFor(body, "length", options.answerFor));
      case "content_filter":
        return Response.json(chatCompletionFor(body, "content_filter", options.answerFor));
      case "malformed":
        return new Response('{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess', {
          headers: { "content-type": "application/json" },
        });
      case "rate_limit": {
        const headers: Record<string, string> = {};
        if (behaviour.retryAfter !== undefined) headers["retry-after"] = behaviour.retryAfter;
        if (behaviour.retryAfterMs !== undefined) headers["retry-after-ms"] = behaviour.retryAfterMs;
        return Response.json(errorBody("Rate limit reached (fake)", "requests"), { status: 429, headers });
      }
      case "error": {
        const headers: Record<string, string> = behaviour.retryAfter ? { "retry-after": behaviour.retryAfter } : {};
        return Response.json(errorBody("The server had an error (fake)", "server_error"), {
          status: behaviour.status ?? 500,
          headers,
        });
      }
      case "hang":
        // Never answers; ends when the client gives up (so it stops counting as in flight) or the server stops.
        await new Promise<void>((resolve) => {
          hanging.add(resolve);
          signal.addEventListener("abort", () => resolve());
        });
        return new Response(null, { status: 499 });
    }
  }

  /** The HTTP 400 a stricter server would give this body, worded as such servers word it; null when it is fine. */
  function refuse(body: ChatCompletionBody): string | null {
    if (options.reasoningModels?.test(body.model)) {
      if (body.max_tokens !== undefined) return "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.";
      if (body.temperature !== undefined && body.temperature !== 1) return "Unsupported value: 'temperature' does not support 0 with this model. Only the default (1) value is supported.";
    }
    const refusesN = options.refuseMultipleSamples instanceof RegExp ? options.refuseMultipleSamples.test(body.model) : options.refuseMultipleSamples;
    if (refusesN && (body.n ?? 1) > 1) return "n > 1 is not supported: only one completion choice is allowed";
    const promptTokens = countTokens(body.messages.map((m) => m.content).join("\n"));
    if (options.contextWindow !== undefined && promptTokens > options.contextWindow) {
      return `This model's maximum context length is ${options.contextWindow} tokens. However, you requested ${promptTokens} tokens in the messages. Please reduce the length of the messages.`;
    }
    return null;
  }

  app.post("/v1/chat/completions", async (c) => {
    const authorized = !options.apiKey || c.req.header("authorization") === `Bearer ${options.apiKey}`;
    const body = (await c.req.json()) as ChatCompletionBody;
    const request: RecordedRequest = {
      number: fake.requests.length + 1,
      body,
      authorized,
      receivedAt: performance.now(),
      behaviour: "ok",
    };
    const behaviour = queue.shift() ?? options.fallback?.(request) ?? { kind: "ok" };
    request.behaviour = behaviour.kind;
    fake.requests.push(request);
    const refusal = refuse(body);
    if (refusal) return c.json(errorBody(refusal, "invalid_request_error"), 400);
    if (!authorized) {
      // like the real API: the rejected key comes back, partly masked
      const sent = (c.req.header("authorization") ?? "").replace(/^Bearer /, "");
      const masked = sent.length > 8 ? `${sent.slice(0, 3)}${"*".repeat(sent.length - 7)}${sent.slice(-4)}` : "***";
      return c.json(errorBody(`Incorrect API key provided: ${masked}.`, "invalid_request_error"), 401);
    }
    if (options.refuseResponseFormat && body.response_format) {
      // the wording OpenAI uses for a model without structured outputs
      return c.json(
        {
          error: {
            message: "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
            type: "invalid_request_error",
            param: "response_format",
            code: null,
          },
        },
        400,
      );
    }
    fake.inFlight++;
    fake.maxInFlight = Math.max(fake.maxInFlight, fake.inFlight);
    try {
      return await answer(body, behaviour, c.req.raw.signal);
    } finally {
      fake.inFlight--;
    }
  });
  options.extend?.(app, fake);
  app.notFound((c) => c.json(errorBody(`No route ${c.req.method} ${c.req.path} (fake)`, "invalid_request_error"), 404));

  const server = Bun.serve({ hostname: "127.0.0.1", port: options.port ?? 0, fetch: app.fetch, idleTimeout: 0 });
  fake.baseURL = `http://127.0.0.1:${server.port}/v1`;
  return fake;
}

/**
 * Run on its own — `bun test/helpers/fake-openai.ts [--port 8080] [--refuse-n]` — it is a stand-in teacher for
 * trying the whole loop offline (README, "Distill your own teacher"): any key, any model name, CoT-looking answers.
 */
if (import.meta.main) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--port");
  const fake = await startFakeOpenAI({ port: at >= 0 ? Number(args[at + 1]) : 8080, refuseMultipleSamples: args.includes("--refuse-n") });
  console.error(`fake OpenAI-compatible teacher at ${fake.baseURL} (Ctrl-C stops it)`);
}
