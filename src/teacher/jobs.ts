/**
 * Durable bulk jobs over a dataset split. Creating a job enumerates its items into SQLite (src/store/jobs.ts); a
 * runner then claims items one by one, asks the teacher and marks each done or failed. Nothing lives only in memory:
 * after kill -9 the next JobManager on the same database takes the job over (its claimed-but-unfinished items go
 * back to pending) and carries on. An item's answers are stored and the item marked done (with the tokens and cost
 * it paid) in ONE SQLite commit, so a crash leaves it either finished and counted, or not stored at all and simply
 * asked again; the rationale store's key makes anything stored before a crash a store hit, never paid twice.
 */
import type { Database } from "bun:sqlite";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import type { Item } from "../data/types.ts";
import { UserError } from "../errors.ts";
import { Checkpointer } from "../store/checkpointer.ts";
import type { BatchState, ClaimedItem, ItemOutcome, JobCounts, JobMode, JobParams, JobRow, JobStore } from "../store/jobs.ts";
import { redactSecrets } from "./client.ts";
import { isTeacherError } from "./errors.ts";
import type { CostEstimate, GenerationParams, RationaleRequest, RationaleResult, RationaleSample, TeacherItem, TeacherService } from "./service.ts";

export interface JobSnapshot extends JobCounts {
  id: string;
  dataset: string;
  split: string;
  mode: JobMode;
  status: JobRow["status"];
  params: JobParams;
  createdAt: number;
  finishedAt: number | null;
  /** Batch-mode jobs: the remote batch's id and state once it exists. */
  batch?: BatchState | null;
  /** "max_cost": the job spent its budget (params.maxCostUsd) with items left; resume it with a higher one. */
  stopped: "max_cost" | null;
}

export interface CreateJobRequest extends JobParams {
  dataset: string;
  split: string;
  batch?: boolean;
}

/** A dry run's answer: what the job would ask and cost (see JobManager.estimate). */
export interface JobEstimate extends CostEstimate {
  dataset: string;
  split: string;
  mode: JobMode;
  model: string | null;
}

/** What runs a batch-mode job to completion (src/teacher/batch.ts); injected so jobs.ts does not depend on it. */
export type BatchRunner = (job: JobRow, context: JobContext) => Promise<void>;

/** What a job's runner may touch: the store, the abort signal, and a way to tell watchers that counts moved. */
export interface JobContext {
  store: JobStore;
  signal: AbortSignal;
  changed(): void;
  params: GenerationParams;
  /** What the teacher is asked for one of the job's items (its generation params and prompt options). */
  request(item: Item): RationaleRequest;
}

export interface JobManagerOptions {
  store: JobStore;
  teacher: Pick<TeacherService, "rationales" | "plan" | "estimate">;
  /** The dataset registry's loadSplit; throws UserError(404) for unknown datasets. */
  loadSplit: (dataset: string, split: string) => Promise<Item[]>;
  batch?: BatchRunner;
  /** Model recorded with jobs that name none, so a restart with another TEACHER_MODEL does not switch mid-job. */
  defaultModel?: string;
  /** Structured mode for jobs that do not say (serve --structured); recorded with the job like the model. */
  defaultStructured?: boolean;
  defaultConcurrency?: number;
  /** A runner silent this long is presumed dead and its jobs are taken over. */
  staleMs?: number;
}

/** `host:pid:nonce`: the pid lets a runner on the same host tell a crashed holder from a live one at once. */
function newRunnerId(): string {
  return `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
}

function runnerIsGone(runner: string, self: string): boolean {
  const [host, pid] = runner.split(":");
  if (host !== hostname()) return false; // another machine: only the heartbeat can tell
  if (Number(pid) === process.pid) return runner !== self; // an earlier manager of this very process
  try {
    process.kill(Number(pid), 0);
  } catch {
    return true;
  }
  return isZombie(Number(pid));
}

/** A killed process nobody reaped yet (containers without an init) still answers kill(pid, 0). Linux only. */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return false;
  }
}

/**
 * Resolves after `ms`, or as soon as the signal aborts, or when the `wake` handed to `onWake` is called — whichever
 * comes first (polling loops that also listen for changes).
 */
export function sleepUnlessAborted(ms: number, signal: AbortSignal, onWake?: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
    onWake?.(done);
  });
}

/** An error as one line for logs and the job_items table, with anything key-like cut out (APIs echo keys). */
function describeError(err: unknown): string {
  return redactSecrets(err instanceof Error ? err.message : String(err));
}

/** Whether a job has spent its budget. */
function overBudget(params: JobParams, spentUsd: number): boolean {
  return params.maxCostUsd !== undefined && spentUsd >= params.maxCostUsd;
}

export function newJobId(): string {
  return `job_${Date.now().toString(36)}${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

export function teacherItem(item: Item): TeacherItem {
  return { question: item.question, choices: item.choices, answer: item.answer, dataset: item.dataset, split: item.split, id: item.id };
}

export function generationParams(params: JobParams): GenerationParams {
  const { model, temperature, maxTokens, n, structured } = params;
  // explicit: a job keeps the mode it was created with, whatever the default of the process resuming it
  return { model, temperature, maxTokens, n, structured: structured === true };
}

/** Tokens and cost this item actually paid for; an item entirely served from the store is `cached`. */
export function outcomeOf(result: RationaleResult): ItemOutcome {
  const paid = result.samples.filter((s) => !s.fromStore);
  return {
    cached: paid.length === 0,
    promptTokens: paid.reduce((sum, s) => sum + (s.usage?.promptTokens ?? 0), 0),
    completionTokens: paid.reduce((sum, s) => sum + (s.usage?.completionTokens ?? 0), 0),
    reasoningTokens: paid.reduce((sum, s) => sum + (s.usage?.reasoningTokens ?? 0), 0),
    costUsd: paid.reduce((sum, s) => sum + (s.costUsd ?? 0), 0),
  };
}

interface ActiveJob {
  abort: AbortController;
  done: Promise<void>;
}

export class JobManager {
  readonly runner = newRunnerId();
  private readonly active = new Map<string, ActiveJob>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private adoptTimer: ReturnType<typeof setInterval> | null = null;
  /** While any job runs here, WAL checkpoints happen on a worker thread instead of inside our commits. */
  private checkpointer: Checkpointer | null = null;
  private readonly staleMs: number;

  constructor(private readonly options: JobManagerOptions) {
    this.staleMs = options.staleMs ?? 15_000;
  }

  get store(): JobStore {
    return this.options.store;
  }

  /** The items and params a job request means, checked (an unusable template fails here, before anything is stored). */
  private async prepare(request: CreateJobRequest): Promise<{ chosen: Item[]; mode: JobMode; params: JobParams }> {
    const items = await this.options.loadSplit(request.dataset, request.split);
    const chosen = request.limit === undefined ? items : items.slice(0, request.limit);
    if (chosen.length === 0) throw new UserError(`${request.dataset}/${request.split} has no items`, 422);
    const mode: JobMode = request.batch ? "batch" : "online";
    if (mode === "batch" && !this.options.batch) throw new UserError("batch mode is not available here", 422);
    if (mode === "batch" && request.maxCostUsd !== undefined) {
      throw new UserError("maxCostUsd stops online jobs between items; a batch is priced up front: check it with a dry run", 422);
    }
    const params: JobParams = {
      model: request.model ?? this.options.defaultModel,
      temperature: request.temperature,
      n: request.n,
      maxTokens: request.maxTokens,
      concurrency: request.concurrency,
      limit: request.limit,
      prompt: request.prompt,
      maxCostUsd: request.maxCostUsd,
      ...((request.structured ?? this.options.defaultStructured) ? { structured: true } : {}),
    };
    // render the first prompt now: a template that cannot serve this split is the caller's error, not 40 failed items
    this.options.teacher.plan({ item: teacherItem(chosen[0]), params: generationParams(params), prompt: params.prompt });
    return { chosen, mode, params };
  }

  /**
   * What a job would cost, without creating it: items, those fully stored already (free), samples to request,
   * estimated tokens (prompt ≈ characters / 4; completion = the max-tokens budget, an upper bound) and cost at the
   * teacher's list price (the batch rate in batch mode); cost is null for a model without a known price.
   */
  async estimate(request: CreateJobRequest): Promise<JobEstimate> {
    const { chosen, mode, params } = await this.prepare(request);
    const estimate = this.options.teacher.estimate(
      chosen.map((item) => ({ item: teacherItem(item), params: generationParams(params), prompt: params.prompt })),
      mode === "batch" ? "batch" : "standard",
    );
    return { dataset: request.dataset, split: request.split, mode, model: params.model ?? null, ...estimate };
  }

  async create(request: CreateJobRequest): Promise<JobSnapshot> {
    const { chosen, mode, params } = await this.prepare(request);
    const id = newJobId();
    this.store.create({ id, dataset: request.dataset, split: request.split, mode, params, items: chosen });
    this.start(id);
    return this.snapshot(id)!;
  }

  snapshot(id: string): JobSnapshot | null {
    const job = this.store.get(id);
    if (!job) return null;
    const { id: _id, total: _total, ...rest } = job;
    const batch = job.mode === "batch" ? { batch: this.store.getBatch(id) } : {};
    const counts = this.store.counts(id);
    const stopped = overBudget(job.params, counts.costUsd) && counts.pending > 0 ? "max_cost" : null;
    return { id, ...rest, ...counts, ...batch, stopped };
  }

  /** Like snapshot, but an unknown id is a 404 for the caller. */
  require(id: string): JobSnapshot {
    const snap = this.snapshot(id);
    if (!snap) throw new UserError(`unknown job "${id}"`, 404);
    return snap;
  }

  /** Runs the job in the background if this manager can take it (nobody alive holds it). */
  start(id: string): boolean {
    if (this.active.has(id)) return true;
    if (!this.store.takeOver(id, this.runner, this.staleMs, (r) => runnerIsGone(r, this.runner))) return false;
    const abort = new AbortController();
    // the heartbeat also notices a cancel from another process, or a take-over after we stalled: then stop
    const heartbeat = setInterval(() => this.store.heartbeat(id, this.runner) || abort.abort(), Math.max(50, this.staleMs / 3));
    const done = this.run(id, abort.signal)
      .catch((err) => console.error(`cot-distill: job ${id} stopped (it stays resumable): ${describeError(err)}`))
      .finally(() => {
        clearInterval(heartbeat);
        this.active.delete(id);
        if (this.active.size === 0) this.stopCheckpointer();
        this.store.release(id, this.runner);
        this.notify(id);
      });
    this.active.set(id, { abort, done });
    this.checkpointer ??= new Checkpointer(this.store.db);
    return true;
  }

  /** Takes over every unfinished job nobody alive holds; with `everyMs`, keeps doing so (jobs of crashed peers). */
  resumeAll(everyMs?: number): string[] {
    const adopt = () => this.store.unfinished().filter((job) => this.start(job.id)).map((job) => job.id);
    if (everyMs && !this.adoptTimer) this.adoptTimer = setInterval(adopt, everyMs);
    return adopt();
  }

  cancel(id: string): JobSnapshot {
    this.require(id);
    this.active.get(id)?.abort.abort();
    this.store.finish(id, "cancelled");
    this.notify(id);
    return this.require(id);
  }

  /** Continues a job that stopped at its budget (or was interrupted) with a new budget; null lifts it. */
  resumeWithBudget(id: string, maxCostUsd: number | null): JobSnapshot {
    const job = this.require(id);
    if (job.status !== "running") throw new UserError(`job ${id} is ${job.status}; only an unfinished job can be resumed`, 409);
    this.store.updateParams(id, { ...job.params, maxCostUsd: maxCostUsd ?? undefined });
    if (!this.start(id)) throw new UserError(`job ${id} is being run by another live process`, 409);
    this.notify(id);
    return this.require(id);
  }

  /** Runs the failed items of a finished or cancelled job again (a teacher outage is over, limits were raised…). */
  retryFailed(id: string): JobSnapshot {
    const job = this.require(id);
    if (job.status === "running") throw new UserError(`job ${id} is still running; retry its failures when it has finished`, 409);
    if (job.failed === 0) throw new UserError(`job ${id} has no failed items`, 409);
    this.store.retryFailed(id);
    if (!this.start(id)) throw new UserError(`job ${id} is being run by another live process`, 409);
    this.notify(id);
    return this.require(id);
  }

  /** Resolves when this manager's runner for the job has stopped (immediately if none runs here). */
  async settled(id: string): Promise<JobSnapshot> {
    await this.active.get(id)?.done;
    return this.require(id);
  }

  /**
   * Snapshots as counts move, until the job is no longer running: at most one per `minIntervalMs` (counting a big
   * job is not free, and watching must not slow the job down), and a poll at least every `pollMs` for jobs that
   * another process runs.
   */
  async *watch(id: string, signal: AbortSignal, { pollMs = 1_000, minIntervalMs = 200 } = {}): AsyncGenerator<JobSnapshot> {
    let last = "";
    let dirty = true;
    let wake = () => {};
    const listener = () => {
      dirty = true;
      wake();
    };
    this.subscribe(id, listener);
    try {
      while (!signal.aborted) {
        dirty = false;
        const snap = this.require(id);
        const key = JSON.stringify(snap);
        if (key !== last) {
          last = key;
          yield snap;
        }
        if (snap.status !== "running" || (snap.stopped && !this.active.has(id))) return;
        await sleepUnlessAborted(minIntervalMs, signal);
        if (!dirty) await sleepUnlessAborted(pollMs, signal, (w) => (wake = w));
        wake = () => {};
      }
    } finally {
      this.unsubscribe(id, listener);
    }
  }

  /** Stops every runner of this manager; their jobs stay 'running' in the database for the next start-up. */
  async close(): Promise<void> {
    if (this.adoptTimer) clearInterval(this.adoptTimer);
    this.adoptTimer = null;
    const running = [...this.active.values()];
    for (const job of running) job.abort.abort();
    await Promise.all(running.map((job) => job.done));
    this.stopCheckpointer();
  }

  private stopCheckpointer(): void {
    this.checkpointer?.stop();
    this.checkpointer = null;
  }

  private subscribe(id: string, listener: () => void): void {
    const set = this.listeners.get(id) ?? new Set();
    set.add(listener);
    this.listeners.set(id, set);
  }

  private unsubscribe(id: string, listener: () => void): void {
    const set = this.listeners.get(id);
    set?.delete(listener);
    if (set?.size === 0) this.listeners.delete(id);
  }

  private notify(id: string): void {
    for (const listener of this.listeners.get(id) ?? []) listener();
  }

  /** Marks the item done inside the teacher's transaction, which must be on this store's connection to be one. */
  private markDoneIn(db: Database, jobId: string, seq: number, samples: RationaleSample[]): void {
    if (db !== this.store.db) throw new Error("the job store and the rationale store must share one database connection");
    this.store.markDone(jobId, seq, outcomeOf({ samples }));
  }

  private async run(id: string, signal: AbortSignal): Promise<void> {
    const job = this.store.get(id)!;
    const params = generationParams(job.params);
    const context: JobContext = {
      store: this.store,
      signal,
      changed: () => this.notify(id),
      params,
      request: (item) => ({ item: teacherItem(item), params, prompt: job.params.prompt }),
    };
    if (job.mode === "batch") await this.options.batch!(job, context);
    else await this.runOnline(job, context);
    if (!signal.aborted && this.store.counts(id).pending === 0) this.store.finish(id, "done");
  }

  /**
   * `concurrency` workers, each taking the next claimed item until none is left or the job is aborted. Items are
   * claimed a round (`concurrency`) at a time; claimed-but-unstarted ones go back to pending on abort, and a
   * crash leaves them claimed for the next runner's take-over to reset.
   */
  private async runOnline(job: JobRow, context: JobContext): Promise<void> {
    const concurrency = job.params.concurrency ?? this.options.defaultConcurrency ?? 8;
    const queue: ClaimedItem[] = [];
    const next = (): ClaimedItem | undefined => {
      // the budget is checked before every claim round: what is in flight when it is crossed still lands (it is paid)
      if (queue.length === 0 && !overBudget(job.params, this.store.counts(job.id).costUsd)) queue.push(...this.store.claim(job.id, concurrency));
      return queue.shift();
    };
    /** Asks for one item and settles it: done, failed, or back to pending when aborted. Never rejects. */
    const settle = async (claimed: ClaimedItem, onAnswered: () => void): Promise<void> => {
      try {
        // done, with what it paid, in the very commit that stores its answers (see RationaleOptions.onStored)
        await this.options.teacher.rationales(
          context.request(claimed.item),
          { onStored: (samples, db) => this.markDoneIn(db, job.id, claimed.seq, samples), onAnswered },
        );
      } catch (err) {
        if (context.signal.aborted) this.store.unclaim(job.id, claimed.seq, this.runner);
        else if (isTeacherError(err)) this.store.markFailed(job.id, claimed.seq, describeError(err), err.kind, err.paid);
        else this.store.markFailed(job.id, claimed.seq, describeError(err));
      }
      context.changed();
    };
    // Each worker has one teacher call in flight. It starts the next as soon as the previous one has answered, not
    // after that answer's (group) commit, and keeps at most one item waiting for its commit.
    const worker = async () => {
      let committing: Promise<void> = Promise.resolve();
      while (!context.signal.aborted) {
        const claimed = next();
        if (!claimed) break;
        let answered!: () => void;
        const free = new Promise<void>((resolve) => (answered = resolve));
        const settled = settle(claimed, answered);
        await Promise.race([free, settled]);
        await committing;
        committing = settled;
      }
      await committing;
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    for (const unstarted of queue) this.store.unclaim(job.id, unstarted.seq, this.runner);
  }
}
