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
import OpenAI, { APIError, toFile } from "openai";
import type { BatchState, ClaimedItem, JobRow } from "../store/jobs.ts";
import type { ChatRequest, ChatResult, TeacherClientOptions } from "./client.ts";
import { chatBody as clientChatBody, readChoices, readUsage, redactSecrets, resolveClientConfig } from "./client.ts";
import { addPaid, TeacherError } from "./errors.ts";
import { outcomeOf, sleepUnlessAborted, type BatchRunner, type JobContext } from "./jobs.ts";
import { paidFor, type RationalePlan, type RationaleSample, type TeacherService } from "./service.ts";

/** Retries of each Files/Batches API call after the first attempt (the SDK's own, with backoff). */
const BATCH_SDK_RETRIES = 3;

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

/** The chat-completions body for one sample, the same fields the online client sends. */
export function chatBody(request: ChatRequest): Record<string, unknown> {
  return clientChatBody(request, { n: 1 });
}

/** A chat.completion body from the output file as the ChatResult `ingest` takes; null when it is not one. */
export function chatResultOf(body: unknown): (Omit<ChatResult, "attempts"> & { tier: "batch" }) | null {
  const b = body as { choices?: unknown; usage?: unknown; model?: string };
  if (!b || !Array.isArray(b.choices) || b.choices.length === 0) return null;
  // a Batch answer is billed at the batch rate
  return { choices: readChoices(b.choices), usage: readUsage(b.usage), model: String(b.model ?? ""), latencyMs: 0, tier: "batch" };
}

/** The plan of an item and which of its samples are not stored yet. */
interface ItemPlan {
  claimed: ClaimedItem;
  plan: RationalePlan;
  missing: number[];
}

export function batchRunner(options: BatchOptions): BatchRunner {
  const config = resolveClientConfig(options);
  const sdk = new OpenAI({ baseURL: config.baseURL, apiKey: config.apiKey || "none", maxRetries: BATCH_SDK_RETRIES, timeout: 120_000 });
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
        body: chatBody(p.plan.request),
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
      const errors: TeacherError[] = [];
      for (const line of bySeq.get(claimed.seq) ?? []) {
        const sampleIndex = parseCustomId(line.custom_id)!.sampleIndex;
        if (teacher.store.get(item.plan.keys[sampleIndex])) continue; // ingested before a crash
        const outcome = ingestLine(item.plan, sampleIndex, line);
        if (outcome instanceof TeacherError) errors.push(outcome);
        else samples.push(outcome);
      }
      const stillMissing = item.plan.keys.filter((key) => !teacher.store.get(key)).length;
      if (stillMissing === 0) context.store.markDone(job.id, claimed.seq, outcomeOf({ samples }));
      else {
        // answers the parser refused, and good samples of an item that fails anyway, were billed all the same
        const paid = [...samples, ...errors].map(paidFor).reduce(addPaid, undefined);
        const why = errors[0]?.message ?? `batch ${status} without an answer for this item`;
        context.store.markFailed(job.id, claimed.seq, why, errors[0]?.kind ?? "upstream", paid);
      }
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
        try {
          // the SDK makes the attempts (maxRetries); after them the job fails rather than being adopted forever
          save({ inputFileId: await upload(job, plans), state: "uploaded" });
        } catch (err) {
          return failPending(job, context, "upload", err);
        }
        let batch: OpenAI.Batches.Batch;
        try {
          batch = await sdk.batches.create({
            input_file_id: state.inputFileId!,
            endpoint: "/v1/chat/completions",
            completion_window: "24h",
            metadata: { cot_distill_job: job.id },
          });
        } catch (err) {
          // a 4xx is a definite no; anything else may have made the batch, which the next start-up looks for
          if (err instanceof APIError && err.status !== undefined && err.status >= 400 && err.status < 500 && err.status !== 429) {
            return failPending(job, context, "create", err);
          }
          throw err;
        }
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

/**
 * The batch could not be set up (no Files API, a refused upload …): every pending item is failed with the upstream's
 * reason, so the job ends (its failures retryable with retry-failed) instead of being retried forever.
 */
function failPending(job: JobRow, context: JobContext, step: "upload" | "create", err: unknown): void {
  const reason = redactSecrets(err instanceof Error ? err.message : String(err));
  const message = `batch ${step} failed, job given up (retry-failed tries again): ${reason}`;
  for (const claimed of context.store.pendingItems(job.id)) context.store.markFailed(job.id, claimed.seq, message, "upstream");
  context.changed();
}

function errorMessage(body: unknown): string | null {
  const message = (body as { error?: { message?: unknown } } | null)?.error?.message;
  return typeof message === "string" ? message : null;
}
