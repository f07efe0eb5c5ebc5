/**
 * A minimal OpenAI-compatible chat-completions server on 127.0.0.1 backed by a real local GGUF model through the
 * optional dependency node-llama-cpp (CPU, prebuilt binaries only). It lets a real language model write rationales
 * through exactly the same client, retry, store and service code as a hosted teacher — offline.
 *
 * The shipped model (models/stories260k, 260K parameters, trained on TinyStories) writes children's stories, not
 * reasoning: it proves the plumbing, not the distillation. It is a completion model, so the chat messages are
 * joined into one text; when that text does not fit the context window the oldest tokens are dropped.
 *
 *   bun src/teacher/local-llm.ts [--port 8089] [--model PATH]   → prints the base URL to use as OPENAI_BASE_URL
 */
import { Hono } from "hono";
import { join } from "node:path";
import * as v from "valibot";

export const DEFAULT_LOCAL_MODEL = join(import.meta.dir, "../../models/stories260k/stories260K-ctx512.gguf");

type NodeLlamaCpp = typeof import("node-llama-cpp");

/** node-llama-cpp, or the reason it cannot be used here (not installed, no prebuilt binary for this platform …). */
export async function loadNodeLlamaCpp(): Promise<{ lib: NodeLlamaCpp } | { error: string }> {
  try {
    return { lib: await import("node-llama-cpp") };
  } catch (err) {
    return { error: `node-llama-cpp cannot be loaded: ${(err as Error).message}` };
  }
}

export interface LocalLlmOptions {
  modelPath?: string;
  /** Name reported as `model` in answers (default: the file name without extension). */
  modelName?: string;
  port?: number;
  contextSize?: number;
  threads?: number;
}

export interface LocalLlmServer {
  baseURL: string;
  model: string;
  contextSize: number;
  /** Chat requests answered so far. */
  requests(): number;
  stop(): Promise<void>;
}

const ChatBody = v.object({
  model: v.optional(v.string()),
  messages: v.pipe(v.array(v.object({ role: v.string(), content: v.string() })), v.minLength(1)),
  temperature: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(2)), 1),
  max_tokens: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  max_completion_tokens: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  n: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(8)), 1),
  stop: v.optional(v.union([v.string(), v.array(v.string())])),
  seed: v.optional(v.pipe(v.number(), v.integer())),
});

function openAiError(message: string, type = "invalid_request_error") {
  return { error: { message, type, param: null, code: null } };
}

/** llama.cpp's stop reasons in OpenAI's words: only running out of tokens is a cut-off answer. */
function finishReason(stopReason: string): "stop" | "length" {
  return stopReason === "maxTokens" || stopReason === "abort" ? "length" : "stop";
}

export async function startLocalLlmServer(options: LocalLlmOptions = {}): Promise<LocalLlmServer> {
  const loaded = await loadNodeLlamaCpp();
  if ("error" in loaded) throw new Error(loaded.error);
  const { getLlama, LlamaCompletion } = loaded.lib;
  const modelPath = options.modelPath ?? DEFAULT_LOCAL_MODEL;
  const modelName = options.modelName ?? modelPath.split("/").pop()!.replace(/\.gguf$/, "");
  const llama = await getLlama({ gpu: false, build: "never", logLevel: loaded.lib.LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });
  const context = await model.createContext({ contextSize: options.contextSize ?? 512, threads: options.threads ?? 1 });
  const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
  let answered = 0;
  // one context sequence: generations run one after another
  let queue: Promise<unknown> = Promise.resolve();
  const serially = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  const app = new Hono();
  app.get("/v1/models", (c) => c.json({ object: "list", data: [{ id: modelName, object: "model", owned_by: "local" }] }));
  app.post("/v1/chat/completions", async (c) => {
    const parsed = v.safeParse(ChatBody, await c.req.json().catch(() => null));
    if (!parsed.success) return c.json(openAiError(`invalid request: ${parsed.issues[0].message}`), 400);
    const body = parsed.output;
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? 128;
    if (maxTokens >= context.contextSize) {
      return c.json(openAiError(`max_tokens must be below the context size ${context.contextSize}`), 400);
    }
    const text = body.messages.map((m) => m.content).join("\n\n");
    const input = model.tokenize(text).slice(-(context.contextSize - maxTokens));
    const stops = body.stop === undefined ? [] : [body.stop].flat();
    const choices = await serially(async () => {
      const out = [];
      for (let index = 0; index < body.n; index++) {
        let tokens = 0;
        const result = await completion.generateCompletionWithMeta(input, {
          maxTokens,
          temperature: body.temperature,
          seed: (body.seed ?? 0) + index,
          customStopTriggers: stops,
          onToken: (t) => void (tokens += t.length),
        });
        out.push({ index, text: result.response, tokens, finish: finishReason(result.metadata.stopReason) });
      }
      return out;
    });
    answered++;
    const completionTokens = choices.reduce((sum, ch) => sum + ch.tokens, 0);
    return c.json({
      id: `chatcmpl-local-${answered}`,
      object: "chat.completion",
      created: Math.floor(Date.now() / 1000),
      model: modelName,
      choices: choices.map((ch) => ({
        index: ch.index,
        message: { role: "assistant", content: ch.text, refusal: null },
        logprobs: null,
        finish_reason: ch.finish,
      })),
      usage: { prompt_tokens: input.length, completion_tokens: completionTokens, total_tokens: input.length + completionTokens },
    });
  });
  app.notFound((c) => c.json(openAiError(`no route ${c.req.method} ${c.req.path}`), 404));

  const server = Bun.serve({ hostname: "127.0.0.1", port: options.port ?? 0, fetch: app.fetch, idleTimeout: 0 });
  return {
    baseURL: `http://127.0.0.1:${server.port}/v1`,
    model: modelName,
    contextSize: context.contextSize,
    requests: () => answered,
    stop: async () => {
      await server.stop(true);
      await queue;
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({ options: { port: { type: "string" }, model: { type: "string" } } });
  const server = await startLocalLlmServer({ port: values.port ? Number(values.port) : 8089, modelPath: values.model });
  console.log(`local LLM "${server.model}" at ${server.baseURL}  (OPENAI_BASE_URL=${server.baseURL} TEACHER_MODEL=${server.model})`);
}
