/**
 * Batch-API mode for big jobs (half the price, results within 24 h): write one /v1/chat/completions request per
 * missing sample into a JSONL file (custom_id = job/item/sample), upload it (/v1/files, purpose "batch"), create the
 * batch (/v1/batches), poll it, download the output file and ingest every answer into the rationale store through the
 * very same `TeacherService.ingest` as the online path (same keys, same records); failures are recorded.
 *
 * Resumable across restarts: every step's result (input file id, batch id, state, output file ids) is saved in
 * job_batches before the next step starts. The one step that could pay twice — creating the batch — is guarded: a
 * restart that finds an uploaded file but no batch id first looks for a batch already made from that file.
 */
import OpenAI, { toFile } from "openai";
import type { BatchState, ClaimedItem, JobRow } from "../store/jobs.ts";
import type { ChatRequest, ChatResult, TeacherClientOptions } from "./client.ts";
import { chatBody, resolveClientConfig } from "./client.ts";
import { TeacherError } from "./errors.ts";
import { outcomeOf, sleepUnlessAborted, type BatchRunner, type JobContext } from "./jobs.ts";
import type { RationalePlan, RationaleSample, TeacherService } from "./service.ts";

const TERMINAL = new Set(["completed", "failed", "expired", "cancelled"]);

export interface BatchOptions extends Pick<TeacherClientOptions, "baseURL" | "apiKey"> {
  teacher: Pick<TeacherService, "plan" | "ingest" | "store" | "recordFailure">;
  /** Time between status polls (default 30 s; a batch takes minutes to hours). */
  pollMs?: number;
}

/** One line of the batch input file. */
interface BatchRequestLine {
  custom_id: string;
  method: "POST";
  url: "/v1/chat/completions";
  body: Record<string, unknown>;
}

/** One line of the output or error file, as the Batch API writes them. */
interface BatchResultLine {
  custom_id: string;
  response: { status_code: number; body: unknown } | null;
  error: { code?: string; message?: string } | null;
}

export const customId = (jobId: string, seq: number, sampleIndex: number) => `${jobId}/${seq}/${sampleIndex}`;

export function parseCustomId(id: string): { jobId: string; seq: number; sampleIndex: number } | null {
  const m = /^(.+)\/(\d+)\/(\d+)$/.exec(id);
  return m ? { jobId: m[1], seq: Number(m[2]), sampleIndex: Number(m[3]) } : null;
}


/** A chat.completion body from the output file as the ChatResult `ingest` takes; null when it is not one. */
export function chatResultOf(body: unknown): (Omit<ChatResult, "attempts"> & { tier: "batch" }) | null {
  const b = body as { choices?: unknown; usage?: { prompt_tokens?: number; completion_tokens?: number }; model?: string };
  if (!b || !Array.isArray(b.choices) || b.choices.length === 0) return null;
  const choices = (b.choices as { index?: number; message?: { content?: unknown }; finish_reason?: string }[]).map((c, i) => ({
    index: typeof c.index === "number" ? c.index : i,
    text: typeof c.message?.content === "string" ? c.message.content : "",
    finishReason: String(c.finish_reason ?? "stop"),
  }));
  const usage =
    b.usage && typeof b.usage.prompt_tokens === "number" && typeof b.usage.completion_tokens === "number"
      ? { promptTokens: b.usage.prompt_tokens, completionTokens: b.usage.completion_tokens }
      : null;
  return { choices, usage, model: String(b.model ?? ""), latencyMs: 0, tier: "batch" as const };
}

/** The plan of an item and which of its samples are not stored yet. */
interface ItemPlan {
  claimed: ClaimedItem;
  plan: RationalePlan;
  missing: number[];
}

export function batchRunner(options: BatchOptions): BatchRunner {
  const config = resolveClientConfig(options);
  const sdk = new OpenAI({ baseURL: config.baseURL, apiKey: config.apiKey || "none", maxRetries: 3, timeout: 120_000 });
  const pollMs = options.pollMs ?? 30_000;
  const { teacher } = options;

  const planItem = (claimed: ClaimedItem, context: JobContext): ItemPlan => {
    const plan = teacher.plan(context.request(claimed.item));
    const missing = plan.keys.flatMap((key, sampleIndex) => (teacher.store.get(key) ? [] : [sampleIndex]));
    return { claimed, plan, missing };
  };

  /** Items whose samples are all stored already are done (cached) without being sent. */
  const plansToSend = (job: JobRow, context: JobContext): ItemPlan[] => {
    const plans = context.store.pendingItems(job.id).map((claimed) => planItem(claimed, context));
    for (const p of plans.filter((p) => p.missing.length === 0)) {
      context.store.markDone(job.id, p.claimed.seq, { cached: true, promptTokens: 0, completionTokens: 0, costUsd: 0 });
    }
    context.changed();
    return plans.filter((p) => p.missing.length > 0);
  };

  const upload = async (job: JobRow, plans: ItemPlan[]): Promise<string> => {
    const lines: BatchRequestLine[] = plans.flatMap((p) =>
      p.missing.map((sampleIndex) => ({
        custom_id: customId(job.id, p.claimed.seq, sampleIndex),
        method: "POST" as const,
        url: "/v1/chat/completions" as const,
        // one sample per line, in the body the online client sends
        body: { ...chatBody({ ...p.plan.request, n: 1 }) } as Record<string, unknown>,
      })),
    );
    const jsonl = lines.map((line) => `${JSON.stringify(line)}\n`).join("");
    const file = await sdk.files.create({ file: await toFile(Buffer.from(jsonl), `${job.id}.jsonl`), purpose: "batch" });
    return file.id;
  };

  /** A batch already created from this input file (a crash between create and save), so it is never made twice. */
  const findBatch = async (inputFileId: string): Promise<OpenAI.Batches.Batch | null> => {
    for await (const batch of sdk.batches.list({ limit: 100 })) if (batch.input_file_id === inputFileId) return batch;
    return null;
  };

  const readLines = async (fileId: string | null | undefined): Promise<BatchResultLine[]> => {
    if (!fileId) return [];
    const text = await (await sdk.files.content(fileId)).text();
    return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l) as BatchResultLine);
  };

  /** Ingests the output (and error) lines of the finished batch, then settles every item still pending. */
  const ingestResults = async (job: JobRow, state: BatchState, status: string, context: JobContext) => {
    const results = [...(await readLines(state.outputFileId)), ...(await readLines(state.errorFileId))];
    const bySeq = new Map<number, BatchResultLine[]>();
    for (const line of results) {
      const id = parseCustomId(line.custom_id);
      if (id?.jobId !== job.id) continue;
      bySeq.set(id.seq, [...(bySeq.get(id.seq) ?? []), line]);
    }
    if (context.store.db !== teacher.store.db) {
      throw new Error("the job store and the rationale store must share one database connection");
    }
    // Per item, its answers are stored and the item marked done (or failed) in one transaction: a crash cannot
    // leave an answered item pending or count it twice.
    const settleItem = teacher.store.db.transaction((claimed: ClaimedItem) => {
      const item = planItem(claimed, context);
      const samples: RationaleSample[] = [];
      const errors: string[] = [];
      for (const line of bySeq.get(claimed.seq) ?? []) {
        const sampleIndex = parseCustomId(line.custom_id)!.sampleIndex;
        if (teacher.store.get(item.plan.keys[sampleIndex])) continue; // ingested before a crash
        const outcome = ingestLine(item.plan, sampleIndex, line);
        if (outcome instanceof Error) errors.push(outcome.message);
        else samples.push(outcome);
      }
      const stillMissing = item.plan.keys.filter((key) => !teacher.store.get(key)).length;
      if (stillMissing === 0) context.store.markDone(job.id, claimed.seq, outcomeOf({ samples }));
      else context.store.markFailed(job.id, claimed.seq, errors[0] ?? `batch ${status} without an answer for this item`);
    });
    for (const claimed of context.store.pendingItems(job.id)) settleItem(claimed);
    context.changed();
  };

  /** A 200 line goes through the service's ingest (truncation etc. recorded there); anything else is recorded here. */
  const ingestLine = (plan: RationalePlan, sampleIndex: number, line: BatchResultLine): RationaleSample | TeacherError => {
    const result = line.response?.status_code === 200 ? chatResultOf(line.response.body) : null;
    if (result) return teacher.ingest(plan, [sampleIndex], result)[0];
    const status = line.response?.status_code;
    const message = line.error?.message ?? errorMessage(line.response?.body) ?? `batch request failed with status ${status}`;
    const err = new TeacherError(`batch: ${message}`, status === 429 ? "rate_limited" : "upstream", 502, 1, status);
    teacher.recordFailure(plan, sampleIndex, err, null);
    return err;
  };

  return async (job, context) => {
    let state: BatchState = context.store.getBatch(job.id) ?? {
      batchId: null,
      inputFileId: null,
      outputFileId: null,
      errorFileId: null,
      state: "new",
    };
    const save = (next: Partial<BatchState>) => {
      state = { ...state, ...next };
      context.store.saveBatch(job.id, state);
      context.changed();
    };
    if (!state.batchId) {
      const adopted = state.inputFileId ? await findBatch(state.inputFileId) : null;
      if (adopted) save({ batchId: adopted.id, state: adopted.status });
      else {
        const plans = plansToSend(job, context);
        if (plans.length === 0) return;
        save({ inputFileId: await upload(job, plans), state: "uploaded" });
        const batch = await sdk.batches.create({
          input_file_id: state.inputFileId!,
          endpoint: "/v1/chat/completions",
          completion_window: "24h",
          metadata: { cot_distill_job: job.id },
        });
        save({ batchId: batch.id, state: batch.status });
      }
    }
    while (!TERMINAL.has(state.state) && !context.signal.aborted) {
      await sleepUnlessAborted(pollMs, context.signal);
      if (context.signal.aborted) break;
      const batch = await sdk.batches.retrieve(state.batchId!);
      save({ state: batch.status, outputFileId: batch.output_file_id ?? null, errorFileId: batch.error_file_id ?? null });
    }
    if (context.signal.aborted) {
      // a cancelled job stops paying; a job merely stopped (shutdown) keeps its batch for the next start-up
      if (context.store.get(job.id)?.status === "cancelled") await sdk.batches.cancel(state.batchId!).catch(() => {});
      return;
    }
    await ingestResults(job, state, state.state, context);
  };
}

function errorMessage(body: unknown): string | null {
  const message = (body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof message === "string" ? message : null;
}
