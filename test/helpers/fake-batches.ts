/**
 * An in-memory OpenAI Files + Batches API for tests, mounted on the fake teacher through its `extend` hook:
 * POST /v1/files (multipart, purpose "batch"), GET /v1/files/:id/content, POST /v1/batches, GET /v1/batches/:id,
 * GET /v1/batches (one page), POST /v1/batches/:id/cancel. A batch walks validating → in_progress → completed over
 * a scripted number of polls and "completes" by answering every input line with the fake chat completions (output
 * file; failures in the error file, in the real wire format).
 */
import type { Hono } from "hono";
import { chatCompletionFor, type AnswerStyle, type ChatCompletionBody, type FakeOpenAI } from "./fake-openai.ts";

interface StoredFile {
  id: string;
  filename: string;
  purpose: string;
  content: string;
  createdAt: number;
}

interface FakeBatch {
  id: string;
  input_file_id: string;
  endpoint: string;
  completion_window: string;
  status: "validating" | "in_progress" | "completed" | "cancelled" | "failed";
  created_at: number;
  output_file_id?: string;
  error_file_id?: string;
  request_counts: { total: number; completed: number; failed: number };
  polls: number;
}

export interface FakeBatchesOptions {
  /** GET /v1/batches/:id calls a batch needs before it completes (default 2). */
  pollsToComplete?: number;
  /** custom_ids the fake answers with an error line (status 500) instead of a completion. */
  failCustomIds?: (customId: string) => boolean;
  /** How the healthy answers are written (fake-openai's styles; default "palm"). */
  style?: AnswerStyle;
  /** The content to answer a custom_id with instead (e.g. "" for an empty answer); undefined = a healthy one. */
  contentFor?: (customId: string) => string | undefined;
  /** Refuse every upload with this status and message (e.g. a 401 that echoes the key, as the real API does). */
  rejectUploads?: { status: 400 | 401 | 403 | 500; message: string };
}

export interface FakeBatches {
  files: Map<string, StoredFile>;
  batches: Map<string, FakeBatch>;
  /** Every request line the fake answered across all batches, by custom_id, in order. */
  answered: string[];
  /** Batches created (a resumed job must not create a second one). */
  created: number;
}

let nextId = 0;
const newId = (prefix: string) => `${prefix}-fake-${(++nextId).toString(36)}`;
const now = () => Math.floor(Date.now() / 1000);

function fileObject(file: StoredFile) {
  return {
    id: file.id,
    object: "file",
    bytes: Buffer.byteLength(file.content),
    created_at: file.createdAt,
    filename: file.filename,
    purpose: file.purpose,
    status: "processed",
  };
}

function batchObject(batch: FakeBatch) {
  const { polls: _polls, ...wire } = batch;
  return { object: "batch", errors: null, metadata: null, ...wire };
}

function errorBody(message: string) {
  return { error: { message, type: "invalid_request_error", param: null, code: null } };
}

/** Returns the `extend` hook for startFakeOpenAI and the state it fills. */
export function fakeBatches(options: FakeBatchesOptions = {}): { extend: (app: Hono, fake: FakeOpenAI) => void; state: FakeBatches } {
  const state: FakeBatches = { files: new Map(), batches: new Map(), answered: [], created: 0 };
  const pollsToComplete = options.pollsToComplete ?? 2;

  const store = (filename: string, purpose: string, content: string): StoredFile => {
    const file = { id: newId("file"), filename, purpose, content, createdAt: now() };
    state.files.set(file.id, file);
    return file;
  };

  /** Answers every line of the input file: completions to the output file, failures to the error file. */
  const complete = (batch: FakeBatch) => {
    const lines = state.files.get(batch.input_file_id)!.content.split("\n").filter(Boolean);
    const outputs: string[] = [];
    const errors: string[] = [];
    for (const line of lines) {
      const request = JSON.parse(line) as { custom_id: string; body: ChatCompletionBody };
      state.answered.push(request.custom_id);
      const id = newId("batch_req");
      if (options.failCustomIds?.(request.custom_id)) {
        const body = { error: { message: "The server had an error (fake batch)", type: "server_error" } };
        errors.push(JSON.stringify({ id, custom_id: request.custom_id, response: { status_code: 500, request_id: id, body }, error: null }));
      } else {
        const body = chatCompletionFor(request.body, "stop", undefined, options.contentFor?.(request.custom_id), options.style);
        outputs.push(JSON.stringify({ id, custom_id: request.custom_id, response: { status_code: 200, request_id: id, body }, error: null }));
      }
    }
    batch.output_file_id = store("batch_output.jsonl", "batch_output", outputs.map((l) => `${l}\n`).join("")).id;
    if (errors.length > 0) batch.error_file_id = store("batch_errors.jsonl", "batch_output", errors.map((l) => `${l}\n`).join("")).id;
    batch.request_counts = { total: lines.length, completed: outputs.length, failed: errors.length };
    batch.status = "completed";
  };

  const extend = (app: Hono) => {
    app.post("/v1/files", async (c) => {
      if (options.rejectUploads) return c.json(errorBody(options.rejectUploads.message), options.rejectUploads.status);
      const form = await c.req.formData();
      const file = form.get("file");
      const purpose = String(form.get("purpose") ?? "");
      if (!(file instanceof File) || purpose !== "batch") return c.json(errorBody("need a file and purpose=batch"), 400);
      return c.json(fileObject(store(file.name, purpose, await file.text())));
    });
    app.get("/v1/files/:id/content", (c) => {
      const file = state.files.get(c.req.param("id"));
      return file ? c.body(file.content, 200, { "content-type": "application/octet-stream" }) : c.json(errorBody("no such file"), 404);
    });
    app.post("/v1/batches", async (c) => {
      const body = (await c.req.json()) as { input_file_id: string; endpoint: string; completion_window: string };
      if (!state.files.has(body.input_file_id)) return c.json(errorBody("unknown input_file_id"), 400);
      if (body.endpoint !== "/v1/chat/completions") return c.json(errorBody("unsupported endpoint"), 400);
      const total = state.files.get(body.input_file_id)!.content.split("\n").filter(Boolean).length;
      const batch: FakeBatch = {
        id: newId("batch"),
        input_file_id: body.input_file_id,
        endpoint: body.endpoint,
        completion_window: body.completion_window,
        status: "validating",
        created_at: now(),
        request_counts: { total, completed: 0, failed: 0 },
        polls: 0,
      };
      state.batches.set(batch.id, batch);
      state.created++;
      return c.json(batchObject(batch));
    });
    app.get("/v1/batches", (c) =>
      c.json({ object: "list", data: [...state.batches.values()].reverse().map(batchObject), has_more: false }),
    );
    app.get("/v1/batches/:id", (c) => {
      const batch = state.batches.get(c.req.param("id"));
      if (!batch) return c.json(errorBody("no such batch"), 404);
      if (batch.status === "validating" || batch.status === "in_progress") {
        batch.polls++;
        batch.status = "in_progress";
        if (batch.polls >= pollsToComplete) complete(batch);
      }
      return c.json(batchObject(batch));
    });
    app.post("/v1/batches/:id/cancel", (c) => {
      const batch = state.batches.get(c.req.param("id"));
      if (!batch) return c.json(errorBody("no such batch"), 404);
      if (batch.status !== "completed") batch.status = "cancelled";
      return c.json(batchObject(batch));
    });
  };
  return { extend, state };
}
