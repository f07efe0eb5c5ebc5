/**
 * Durable bulk jobs: one row per job, one row per (job, item) enumerated when the job is created, and the Batch-API
 * state of batch-mode jobs. Everything a job needs to resume after kill -9 lives here; the rationales themselves live
 * in the rationale store (whose key makes a retried item idempotent).
 *
 * Item life: pending → claimed (a runner took it) → done | failed. A runner that dies leaves claimed items behind;
 * the next runner to take the job over puts them back to pending.
 */
import type { Database } from "bun:sqlite";
import type { Item } from "../data/types.ts";
import { PARSE_FAILURE_REASONS } from "../teacher/parse.ts";
import type { PromptOptions } from "../teacher/prompts.ts";
import { addColumn, registerMigration, registerSchema } from "./db.ts";

registerSchema(
  "jobs",
  `CREATE TABLE IF NOT EXISTS jobs (
    id          TEXT PRIMARY KEY,
    dataset     TEXT NOT NULL,
    split       TEXT NOT NULL,
    mode        TEXT NOT NULL CHECK (mode IN ('online', 'batch')),
    params      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'cancelled')),
    total       INTEGER NOT NULL,
    runner      TEXT,
    heartbeat   INTEGER,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    interrupted_calls INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE IF NOT EXISTS job_items (
    job_id            TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL,
    item              TEXT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'claimed', 'done', 'failed')),
    cached            INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    error             TEXT,
    error_kind        TEXT,
    reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
  );
  CREATE INDEX IF NOT EXISTS job_items_pending ON job_items (job_id, seq) WHERE state = 'pending';
  CREATE TABLE IF NOT EXISTS job_batches (
    job_id         TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    batch_id       TEXT,
    input_file_id  TEXT,
    output_file_id TEXT,
    error_file_id  TEXT,
    state          TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
  );`,
);

registerMigration({
  name: "job-items-failure-kind",
  order: 0,
  apply(db) {
    addColumn(db, "job_items", "error_kind", "TEXT");
    addColumn(db, "job_items", "reasoning_tokens", "INTEGER NOT NULL DEFAULT 0");
  },
});

export type JobMode = "online" | "batch";
export type JobStatus = "running" | "done" | "cancelled";

/** Generation parameters a job was created with (what every item is requested with). */
export interface JobParams {
  model?: string;
  /** Template, shots, free or label-conditioned (src/teacher/prompts.ts); a template file travels as its content. */
  prompt?: PromptOptions;
  /** The job stops claiming items once it has spent this much (USD); it stays resumable with a higher budget. */
  maxCostUsd?: number;
  temperature?: number;
  n?: number;
  maxTokens?: number;
  concurrency?: number;
  limit?: number;
  /** Structured mode (response_format json_schema); absent = plain text. */
  structured?: boolean;
}

export interface JobRow {
  id: string;
  dataset: string;
  split: string;
  mode: JobMode;
  params: JobParams;
  status: JobStatus;
  total: number;
  createdAt: number;
  finishedAt: number | null;
}

export interface JobCounts {
  /**
   * Items a runner held when it died (kill -9, power loss) — each may have been a teacher call in flight, paid but
   * never answered to us, so its tokens and cost are NOT in the totals below: an upper bound on such calls (a held
   * item may also have been waiting its turn). Each costs at most its prompt plus maxTokens x n completion tokens.
   */
  interruptedCalls: number;
  total: number;
  done: number;
  cached: number;
  failed: number;
  pending: number;
  promptTokens: number;
  completionTokens: number;
  tokens: number;
  /** Of completionTokens, those the API reported as reasoning. */
  reasoningTokens: number;
  costUsd: number;
  /** Failed items by the kind of their failure: parse reasons ("no_answer", "ambiguous" …) and teacher errors. */
  failuresByKind: Record<string, number>;
  /** Items whose answer the parser refused (src/teacher/parse.ts: empty, refusal, no_answer, ambiguous, no_rationale), per item answered (done or failed); 0 before any. */
  parseFailureRate: number;
  /** The same, per parse reason that occurred: {"no_answer": 0.05, "ambiguous": 0.01}. */
  parseFailureRates: Record<string, number>;
}

export interface ClaimedItem {
  seq: number;
  item: Item;
  attempts: number;
}

/** What one finished item contributed: `cached` when every sample came from the store (nothing was paid). */
export interface ItemOutcome {
  cached: boolean;
  promptTokens: number;
  completionTokens: number;
  reasoningTokens?: number;
  costUsd: number;
}

export interface BatchState {
  batchId: string | null;
  inputFileId: string | null;
  outputFileId: string | null;
  errorFileId: string | null;
  state: string;
}

interface RawJob {
  id: string;
  dataset: string;
  split: string;
  mode: JobMode;
  params: string;
  status: JobStatus;
  total: number;
  created_at: number;
  finished_at: number | null;
}

const toJob = (r: RawJob): JobRow => ({
  id: r.id,
  dataset: r.dataset,
  split: r.split,
  mode: r.mode,
  params: JSON.parse(r.params),
  status: r.status,
  total: r.total,
  createdAt: r.created_at,
  finishedAt: r.finished_at,
});

/** All SQL about jobs. One instance per connection; `db.query` caches each statement after its first use. */
export class JobStore {
  constructor(readonly db: Database) {
    // databases from before interrupted calls were counted get the column (0: nothing known about earlier crashes)
    const columns = db.query<{ name: string }, []>("PRAGMA table_info(jobs)").all();
    if (!columns.some((c) => c.name === "interrupted_calls")) db.exec("ALTER TABLE jobs ADD COLUMN interrupted_calls INTEGER NOT NULL DEFAULT 0");
  }

  /** The job and all its items in one transaction: a job is never visible half-enumerated. */
  create(job: { id: string; dataset: string; split: string; mode: JobMode; params: JobParams; items: Item[] }): JobRow {
    const now = Date.now();
    const insertItem = this.db.query("INSERT INTO job_items (job_id, seq, item) VALUES (?, ?, ?)");
    this.db.transaction(() => {
      this.db
        .query(
          `INSERT INTO jobs (id, dataset, split, mode, params, status, total, created_at)
           VALUES (?, ?, ?, ?, ?, 'running', ?, ?)`,
        )
        .run(job.id, job.dataset, job.split, job.mode, JSON.stringify(job.params), job.items.length, now);
      job.items.forEach((item, seq) => insertItem.run(job.id, seq, JSON.stringify(item)));
    })();
    return this.get(job.id)!;
  }

  get(id: string): JobRow | null {
    const row = this.db.query<RawJob, [string]>("SELECT * FROM jobs WHERE id = ?").get(id);
    return row ? toJob(row) : null;
  }

  list(limit = 100): JobRow[] {
    return this.db
      .query<RawJob, [number]>("SELECT * FROM jobs ORDER BY created_at DESC, id LIMIT ?")
      .all(limit)
      .map(toJob);
  }

  /** Jobs still running: after a restart these are the ones to resume. */
  unfinished(): JobRow[] {
    return this.db
      .query<RawJob, []>("SELECT * FROM jobs WHERE status = 'running' ORDER BY created_at")
      .all()
      .map(toJob);
  }

  /**
   * Takes the job for `runner` if nobody holds it, it is already ours, or its holder is gone (`isGone`) or silent
   * for longer than `staleMs`. Items the previous holder claimed but never finished go back to pending.
   */
  takeOver(id: string, runner: string, staleMs: number, isGone: (runner: string) => boolean): boolean {
    return this.db.transaction(() => {
      const row = this.db
        .query<{ runner: string | null; heartbeat: number | null; status: JobStatus }, [string]>(
          "SELECT runner, heartbeat, status FROM jobs WHERE id = ?",
        )
        .get(id);
      if (!row || row.status !== "running") return false;
      const now = Date.now();
      const free =
        row.runner === null || row.runner === runner || isGone(row.runner) || (row.heartbeat ?? 0) < now - staleMs;
      if (!free) return false;
      this.db.query("UPDATE jobs SET runner = ?, heartbeat = ? WHERE id = ?").run(runner, now, id);
      // items still claimed were left by a runner that died with them: each may have had a call in flight, paid
      // for but never answered to us; counted here, since their usage can no longer be known
      this.db
        .query("UPDATE jobs SET interrupted_calls = interrupted_calls + (SELECT count(*) FROM job_items WHERE job_id = ?1 AND state = 'claimed') WHERE id = ?1")
        .run(id);
      this.db.query("UPDATE job_items SET state = 'pending' WHERE job_id = ? AND state = 'claimed'").run(id);
      return true;
    })();
  }

  /** False when the runner no longer holds a running job (cancelled elsewhere, or taken over): it must stop. */
  heartbeat(id: string, runner: string): boolean {
    return (
      this.db
        .query("UPDATE jobs SET heartbeat = ? WHERE id = ? AND runner = ? AND status = 'running'")
        .run(Date.now(), id, runner).changes > 0
    );
  }

  release(id: string, runner: string): void {
    this.db.query("UPDATE jobs SET runner = NULL WHERE id = ? AND runner = ?").run(id, runner);
  }

  /**
   * Atomically claims up to `limit` pending items (lowest seq first) in one statement — one commit for a whole
   * round of workers rather than one each. Empty when none is left.
   */
  claim(id: string, limit: number): ClaimedItem[] {
    return this.db
      .query<{ seq: number; item: string; attempts: number }, [string, number]>(
        `UPDATE job_items SET state = 'claimed', attempts = attempts + 1
         WHERE job_id = ?1 AND seq IN
           (SELECT seq FROM job_items WHERE job_id = ?1 AND state = 'pending' ORDER BY seq LIMIT ?2)
         RETURNING seq, item, attempts`,
      )
      .all(id, limit)
      .map((r) => ({ seq: r.seq, item: JSON.parse(r.item), attempts: r.attempts }))
      .sort((a, b) => a.seq - b.seq);
  }

  claimNext(id: string): ClaimedItem | null {
    return this.claim(id, 1)[0] ?? null;
  }

  /** Pending items without claiming them (batch mode writes them all into one input file). */
  pendingItems(id: string): ClaimedItem[] {
    return this.db
      .query<{ seq: number; item: string; attempts: number }, [string]>(
        "SELECT seq, item, attempts FROM job_items WHERE job_id = ? AND state IN ('pending', 'claimed') ORDER BY seq",
      )
      .all(id)
      .map((r) => ({ seq: r.seq, item: JSON.parse(r.item), attempts: r.attempts }));
  }

  markDone(id: string, seq: number, outcome: ItemOutcome): void {
    this.db
      .query(
        `UPDATE job_items SET state = 'done', cached = ?, prompt_tokens = prompt_tokens + ?,
         completion_tokens = completion_tokens + ?, reasoning_tokens = reasoning_tokens + ?, cost_usd = cost_usd + ?,
         error = NULL, error_kind = NULL WHERE job_id = ? AND seq = ?`,
      )
      .run(outcome.cached ? 1 : 0, outcome.promptTokens, outcome.completionTokens, outcome.reasoningTokens ?? 0, outcome.costUsd, id, seq);
  }

  /**
   * `kind`: the teacher failure kind (a parse reason, "truncated", "rate_limited" …); "error" when unknown. `paid`: what
   * the refused answers cost (an answer the parser refuses was still billed), added to the item's spend.
   */
  markFailed(id: string, seq: number, error: string, kind = "error", paid?: Omit<ItemOutcome, "cached">): void {
    this.db
      .query(
        `UPDATE job_items SET state = 'failed', error = ?, error_kind = ?, prompt_tokens = prompt_tokens + ?,
         completion_tokens = completion_tokens + ?, reasoning_tokens = reasoning_tokens + ?, cost_usd = cost_usd + ?
         WHERE job_id = ? AND seq = ?`,
      )
      .run(error, kind, paid?.promptTokens ?? 0, paid?.completionTokens ?? 0, paid?.reasoningTokens ?? 0, paid?.costUsd ?? 0, id, seq);
  }

  /** Puts a claimed item back — unless another runner holds the job now (its claims are not ours to undo). */
  unclaim(id: string, seq: number, runner: string): void {
    this.db
      .query(
        `UPDATE job_items SET state = 'pending' WHERE job_id = ?1 AND seq = ?2 AND state = 'claimed'
         AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND (runner IS NULL OR runner = ?3))`,
      )
      .run(id, seq, runner);
  }

  /** Failed items back to pending and the job running again; returns how many items will be retried. */
  retryFailed(id: string): number {
    return this.db.transaction(() => {
      const retried = this.db
        .query("UPDATE job_items SET state = 'pending', error = NULL, error_kind = NULL WHERE job_id = ? AND state = 'failed'")
        .run(id).changes;
      if (retried > 0) this.db.query("UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = ?").run(id);
      return retried;
    })();
  }

  finish(id: string, status: Exclude<JobStatus, "running">): boolean {
    const changed = this.db
      .query("UPDATE jobs SET status = ?, finished_at = ?, runner = NULL WHERE id = ? AND status = 'running'")
      .run(status, Date.now(), id).changes;
    return changed > 0;
  }

  counts(id: string): JobCounts {
    const r = this.db
      .query<Record<string, number | null>, [string]>(
        `SELECT count(*) AS total,
           sum(state = 'done') AS done, sum(state = 'done' AND cached) AS cached, sum(state = 'failed') AS failed,
           sum(state IN ('pending', 'claimed')) AS pending,
           sum(prompt_tokens) AS promptTokens, sum(completion_tokens) AS completionTokens,
           sum(reasoning_tokens) AS reasoningTokens, sum(cost_usd) AS costUsd
         FROM job_items WHERE job_id = ?`,
      )
      .get(id)!;
    const n = (k: string) => Number(r[k] ?? 0);
    const failuresByKind = Object.fromEntries(
      this.db
        .query<{ kind: string; n: number }, [string]>(
          `SELECT COALESCE(error_kind, 'error') AS kind, count(*) AS n FROM job_items
           WHERE job_id = ? AND state = 'failed' GROUP BY 1 ORDER BY 1`,
        )
        .all(id)
        .map((row) => [row.kind, row.n]),
    );
    const parseFailures = PARSE_FAILURE_REASONS.reduce((sum, kind) => sum + (failuresByKind[kind] ?? 0), 0);
    const answered = n("done") + n("failed");
    const interrupted = this.db.query<{ n: number }, [string]>("SELECT interrupted_calls AS n FROM jobs WHERE id = ?").get(id)?.n ?? 0;
    return {
      total: n("total"),
      done: n("done"),
      cached: n("cached"),
      failed: n("failed"),
      pending: n("pending"),
      promptTokens: n("promptTokens"),
      completionTokens: n("completionTokens"),
      tokens: n("promptTokens") + n("completionTokens"),
      reasoningTokens: n("reasoningTokens"),
      costUsd: n("costUsd"),
      failuresByKind,
      parseFailureRate: answered === 0 ? 0 : parseFailures / answered,
      parseFailureRates: Object.fromEntries(
        PARSE_FAILURE_REASONS.filter((reason) => failuresByKind[reason]).map((reason) => [reason, failuresByKind[reason] / answered]),
      ),
      interruptedCalls: interrupted,
    };
  }

  updateParams(id: string, params: JobParams): void {
    this.db.query("UPDATE jobs SET params = ? WHERE id = ?").run(JSON.stringify(params), id);
  }

  /** Per-item failures, for reports. */
  failures(id: string, limit = 100): { seq: number; error: string | null }[] {
    return this.db
      .query<{ seq: number; error: string | null }, [string, number]>(
        "SELECT seq, error FROM job_items WHERE job_id = ? AND state = 'failed' ORDER BY seq LIMIT ?",
      )
      .all(id, limit);
  }

  getBatch(id: string): BatchState | null {
    const r = this.db
      .query<
        { batch_id: string | null; input_file_id: string | null; output_file_id: string | null; error_file_id: string | null; state: string },
        [string]
      >("SELECT batch_id, input_file_id, output_file_id, error_file_id, state FROM job_batches WHERE job_id = ?")
      .get(id);
    return r
      ? { batchId: r.batch_id, inputFileId: r.input_file_id, outputFileId: r.output_file_id, errorFileId: r.error_file_id, state: r.state }
      : null;
  }

  /** Upserts the remote batch's state; called after every step so a restart continues from the last one. */
  saveBatch(id: string, batch: BatchState): void {
    this.db
      .query(
        `INSERT INTO job_batches (job_id, batch_id, input_file_id, output_file_id, error_file_id, state, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (job_id) DO UPDATE SET batch_id = excluded.batch_id, input_file_id = excluded.input_file_id,
           output_file_id = excluded.output_file_id, error_file_id = excluded.error_file_id, state = excluded.state,
           updated_at = excluded.updated_at`,
      )
      .run(id, batch.batchId, batch.inputFileId, batch.outputFileId, batch.errorFileId, batch.state, Date.now());
  }
}
