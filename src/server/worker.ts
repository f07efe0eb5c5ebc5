/**
 * GPU work of the HTTP server, done in child processes so the server stays responsive (and survives a GPU crash):
 * training is `bun src/cli.ts train …` (which registers and updates its run in SQLite itself); evaluation and
 * prediction go to resident inference workers, this file run as `bun src/server/worker.ts serve --students N`: a
 * long-lived process that holds one GPU device, compiles the kernels once and keeps the last N students loaded
 * (src/eval/resident.ts), reading one JSON request per line on stdin and answering one JSON line on stdout, one
 * request at a time. So a repeated /v1/predict costs a decode, not a process start, a device and a model load.
 * Every request still takes a slot of the process pool (--max-processes, --max-queue) while it runs; a worker
 * that crashes fails its request and is replaced on the next one; cancelling an evaluation kills its worker. A
 * worker answers a bug (not a bad request) and then exits, so no request runs on a device in an unknown state.
 *
 * Evaluation jobs are kept in memory: they are cheap to rerun, and their results also land in the run folder.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { BusyError, UserError } from "../errors.ts";
import { CLI_PATH, childEnv, lastErrorLine, trainArgs } from "../experiment/runner.ts";
import { conditionName } from "../experiment/grid.ts";
import { serverTeacherName, TEACHER_PREFIX } from "../distill/rationales.ts";
import { scratchSize } from "../model/ref.ts";
import { serverRoots, type Roots } from "../roots.ts";
import { openDatabase } from "../store/db.ts";
import { newRunId, RunStore, type RunRow } from "../store/runs.ts";
import type { EvaluateRequest, PredictRequest, RunRequest } from "./routes/run-schemas.ts";

const WORKER_PATH = import.meta.path;

export interface SupervisorOptions {
  /** The run index; default: opened on `dbPath` when first needed (an app that never sees a run route opens nothing). */
  runs?: RunStore;
  /** The database the training children register their runs in: the server's own. */
  dbPath: string;
  /** Where client-named runs, models and rationale files are looked up (default: serverRoots(), from the environment). */
  roots?: Roots;
  /** Where runs started over HTTP get their folders (default <runs root>/http). */
  runsRoot?: string;
  /** Folder of experiment grids (`<root>/<grid>/results.json`) the dashboard shows (default: the runs root). */
  experimentsRoot?: string;
  /** How long POST /v1/runs waits for the train command to accept its settings before answering 202 anyway. */
  acceptTimeoutMs?: number;
  /** Training/evaluation/prediction child processes at once (default 2); more wait in the queue. */
  maxProcesses?: number;
  /** Work waiting for a process slot (default 16); beyond it, requests are answered 429 with Retry-After. */
  maxQueued?: number;
  /** Milliseconds a cancelled child gets to exit after SIGTERM before SIGKILL (default 3000). */
  killGraceMs?: number;
  /** Students each inference worker keeps loaded (LRU, default 2). */
  studentCache?: number;
}

export type EvaluationStatus = "queued" | "running" | "done" | "failed" | "cancelled";

export interface Evaluation {
  id: string;
  status: EvaluationStatus;
  request: EvaluateRequest;
  /** The model folder or run folder evaluated. */
  target: string;
  createdAt: number;
  finishedAt: number | null;
  result?: unknown;
  error?: string;
}

/** A run name from its settings when none was given: "cqa-after-shuffled-s0". */
function defaultRunName(r: RunRequest): string {
  return `${r.dataset}-${conditionName(r.placement, r.selection)}-s${r.seed}`;
}

/** The train command's one-line error, last in its log. */
function logError(path: string): string {
  return existsSync(path) ? lastErrorLine(readFileSync(path, "utf8")) : "";
}

/** A child process as the supervisor holds it. */
type Child = { pid: number; kill(signal?: number | NodeJS.Signals): void; exited: Promise<number> };

/** A worker's answer line; `cot` marks protocol lines (anything else a library prints on stdout is skipped). */
interface WorkerAnswer {
  cot: 1;
  ok: boolean;
  result?: unknown;
  error?: string;
  /** The error is the request's fault (a UserError), not a bug. */
  user?: boolean;
}

/**
 * Calls onLine for each line of a byte stream (awaiting it, so lines are handled one at a time) until the stream
 * ends or onLine returns false.
 */
async function forEachLine(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void | boolean | Promise<void | boolean>): Promise<void> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { done, value } = await reader.read();
    buffered += done ? decoder.decode() : decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffered.indexOf("\n")) >= 0) {
      const line = buffered.slice(0, end);
      buffered = buffered.slice(end + 1);
      if ((await onLine(line)) === false) {
        await reader.cancel();
        return;
      }
    }
    if (done) break;
  }
  if (buffered) await onLine(buffered);
}

/**
 * A resident inference worker as the supervisor holds it: requests go in one at a time (the supervisor holds a
 * pool slot for each); its last stderr lines explain a crash.
 */
class InferenceWorker implements Child {
  private readonly process;
  private pending: { resolve: (answer: WorkerAnswer) => void; reject: (err: Error) => void } | null = null;
  private stderrTail = "";
  readonly exited: Promise<number>;
  alive = true;

  constructor(students: number, onExit: (worker: InferenceWorker) => void) {
    this.process = Bun.spawn([process.execPath, WORKER_PATH, "serve", "--students", String(students)], { env: childEnv(), stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    void forEachLine(this.process.stdout, (line) => {
      let answer: WorkerAnswer;
      try {
        answer = JSON.parse(line);
      } catch {
        return;
      }
      if (answer?.cot !== 1) return;
      const pending = this.pending;
      this.pending = null;
      pending?.resolve(answer);
    });
    void forEachLine(this.process.stderr, (line) => {
      this.stderrTail = (this.stderrTail + line + "\n").slice(-8_000);
    });
    this.exited = this.process.exited.then((code) => {
      this.alive = false;
      const pending = this.pending;
      this.pending = null;
      pending?.reject(new Error(`inference worker exited with code ${code}: ${lastErrorLine(this.stderrTail)}`));
      onExit(this);
      return code;
    });
  }

  get pid(): number {
    return this.process.pid;
  }

  kill(signal?: number | NodeJS.Signals): void {
    this.process.kill(signal);
  }

  request(task: WorkerTask, body: unknown): Promise<WorkerAnswer> {
    if (this.pending) throw new Error("inference worker is busy");
    if (!this.alive) return Promise.reject(new Error("inference worker has exited"));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.process.stdin.write(JSON.stringify({ task, request: body }) + "\n");
      void this.process.stdin.flush();
    });
  }
}

/**
 * At most `max` child processes at once, FIFO after that, at most `maxQueued` waiting: work beyond that is refused
 * (BusyError → 429 + Retry-After) before anything of it is created.
 */
export class ProcessPool {
  private running = 0;
  private readonly queue: Array<{ key: string; launch: () => void }> = [];

  constructor(
    readonly max: number,
    readonly maxQueued: number,
  ) {
    if (!(max >= 1)) throw new RangeError("maxProcesses must be >= 1");
  }

  get active(): number {
    return this.running;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Throws BusyError when `submit` would have to refuse: call before creating what the work needs. */
  admit(): void {
    if (this.running < this.max || this.queue.length < this.maxQueued) return;
    throw new BusyError(`${this.running} training/evaluation processes are running and ${this.queue.length} are queued (the most this server takes); try again later`, 30);
  }

  /** Launches now (true) or when a slot frees (false); `done()` must be called once a launched task's process ends. */
  submit(key: string, launch: () => void): boolean {
    this.admit();
    if (this.running < this.max) {
      this.running++;
      launch();
      return true;
    }
    this.queue.push({ key, launch });
    return false;
  }

  /** Takes queued work out before it started; false when it is not (or no longer) queued. */
  drop(key: string): boolean {
    const at = this.queue.findIndex((task) => task.key === key);
    if (at < 0) return false;
    this.queue.splice(at, 1);
    return true;
  }

  done(): void {
    const next = this.queue.shift();
    if (next) next.launch();
    else this.running--;
  }

  /** Forgets every queued task (their keys, for the caller to mark). */
  clear(): string[] {
    return this.queue.splice(0).map((task) => task.key);
  }
}

export class RunSupervisor {
  readonly evaluations = new Map<string, Evaluation>();
  readonly roots: Roots;
  readonly pool: ProcessPool;
  /** Children by the run or evaluation id they work for (predictions use a fresh key). */
  private readonly children = new Map<string, Child>();
  private readonly cancelling = new Set<string>();
  /** Resident inference workers waiting for a request (at most one per process slot). */
  private readonly idleWorkers: InferenceWorker[] = [];
  private closed = false;
  private store: RunStore | undefined;

  constructor(private readonly options: SupervisorOptions) {
    this.store = options.runs;
    this.roots = options.roots ?? serverRoots();
    this.pool = new ProcessPool(options.maxProcesses ?? 2, options.maxQueued ?? 16);
  }

  get experimentsRoot(): string {
    return this.options.experimentsRoot ?? this.roots.dirs.runs;
  }

  get runs(): RunStore {
    this.store ??= new RunStore(openDatabase(this.options.dbPath));
    return this.store;
  }

  /** The process id working for a run or evaluation right now (none while queued or after it ended). */
  pid(id: string): number | undefined {
    return this.children.get(id)?.pid;
  }

  /**
   * A run by id, name or folder (relative to the runs root), whose folder lies inside the runs root; 404 otherwise
   * (a run of the index kept elsewhere, e.g. trained by the CLI into /tmp, is not the server's to read or write).
   */
  requireRun(ref: string): RunRow {
    this.roots.checkName("run", ref);
    const run = this.runs.get(ref) ?? this.runs.findByName(ref) ?? (this.roots.anyPath ? this.runs.byDir(ref) : this.runs.byDir(join(this.roots.dirs.runs, ref)));
    if (!run || !this.roots.contains("run", run.runDir)) throw new UserError(`no run "${ref}"`, 404);
    return run;
  }

  /** The train command's view of a request: every client-named path resolved inside the roots (4xx otherwise). */
  private resolveRequest(request: RunRequest): RunRequest {
    const model = scratchSize(request.model) ? request.model : this.roots.resolve("model", request.model);
    const named = request.rationales;
    // the shipped and the dataset's own rationales need no lookup; a teacher name is looked up in the server's own
    // rationale store, never on the disk; anything else is a file in the data root
    const builtin = named === undefined || named === "palm" || named === "gold";
    const teacher = builtin ? null : serverTeacherName(named);
    const rationales = builtin ? named : teacher !== null ? `${TEACHER_PREFIX}${teacher}` : this.roots.resolve("rationales", named);
    const { selection } = request;
    if (selection.kind === "key" && selection.attributionModel !== undefined) {
      return { ...request, model, rationales, selection: { ...selection, attributionModel: this.resolveStudent(selection.attributionModel) } };
    }
    return { ...request, model, rationales };
  }

  /** A trained student: a run (id, name or folder in the runs root) or a model folder / hub id. */
  private resolveStudent(ref: string): string {
    try {
      return this.requireRun(ref).runDir;
    } catch {
      return this.roots.resolve(["run", "model"], ref);
    }
  }

  /**
   * Registers the run (queued) and starts `train` in a child when a process slot is free — then waits until the
   * train command has accepted the settings (the run turns "running"), so bad settings that only the data can reveal
   * (k larger than a rationale) are still answered 400, with the run's row and folder removed again — or until
   * acceptTimeoutMs passes. A run that has to wait for a slot is answered at once, queued.
   */
  async startRun(request: RunRequest): Promise<RunRow> {
    const resolved = this.resolveRequest(request);
    this.pool.admit(); // 429 before anything exists
    const name = request.name ?? defaultRunName(request);
    const id = newRunId();
    const runDir = resolve(this.options.runsRoot ?? join(this.roots.dirs.runs, "http"), `${name}-${id}`);
    mkdirSync(runDir, { recursive: true });
    const spec = { ...resolved, name };
    const run = this.runs.register({ id, name, runDir, config: { spec, source: "http" } });
    const log = join(runDir, "train.log");
    let exited: Promise<number> | undefined;
    const launch = () => {
      let child: Child;
      try {
        const fd = openSync(log, "a");
        try {
          child = Bun.spawn([process.execPath, CLI_PATH, ...trainArgs(spec, runDir, { db: this.options.dbPath })], { env: childEnv(), stdin: "ignore", stdout: fd, stderr: fd });
        } finally {
          closeSync(fd);
        }
      } catch (err) {
        // no process (out of file descriptors, the folder gone …): the slot is free again and the run says why
        exited = Promise.resolve(70);
        this.pool.done();
        this.runs.markFailed(id, `could not start the train command: ${(err as Error).message}`);
        return;
      }
      this.children.set(id, child);
      this.trimIdleWorkers();
      exited = child.exited.then((code) => {
        this.children.delete(id);
        this.pool.done();
        const now = this.runs.get(id);
        if (this.cancelling.delete(id)) {
          if (now) this.runs.markCancelled(id);
        } else if (now && (now.status === "queued" || now.status === "running")) {
          this.runs.markFailed(id, logError(log) || `train exited with code ${code}`);
        }
        return code;
      });
    };
    if (!this.pool.submit(id, launch)) return run;
    const code = await this.untilAccepted(id, exited!);
    if (code === 1) {
      // refused: the request leaves nothing behind
      const why = this.roots.redact(this.runs.get(id)?.error ?? "the train command refused these settings");
      this.runs.delete(id);
      rmSync(runDir, { recursive: true, force: true });
      throw new UserError(why, 400);
    }
    return this.runs.get(id) ?? run;
  }

  private async untilAccepted(id: string, exited: Promise<number>): Promise<number | null> {
    const deadline = Date.now() + (this.options.acceptTimeoutMs ?? 60_000);
    let code: number | null = null;
    void exited.then((c) => (code = c));
    while (code === null && Date.now() < deadline) {
      const status = this.runs.get(id)?.status;
      if (status === "running" || status === "done") return null;
      await Bun.sleep(50);
    }
    return code;
  }

  /** Stops a queued or running run: out of the queue at once, or its process killed (SIGTERM, then SIGKILL). */
  async cancelRun(ref: string): Promise<RunRow> {
    const run = this.requireRun(ref);
    if (this.pool.drop(run.id)) {
      this.runs.markCancelled(run.id);
      return this.runs.get(run.id)!;
    }
    const child = this.children.get(run.id);
    if (!child) {
      if (run.status === "queued" || run.status === "running") {
        throw new UserError(`run "${ref}" is ${run.status} in another process (not started by this server); stop that process`, 409);
      }
      throw new UserError(`run "${ref}" is ${run.status}: there is nothing to cancel`, 409);
    }
    this.cancelling.add(run.id);
    await this.stop(child);
    return this.runs.get(run.id)!;
  }

  /** Cancels the run if it is still going, then removes its row and its folder. */
  async deleteRun(ref: string): Promise<{ deleted: string }> {
    const run = this.requireRun(ref);
    if (this.pool.drop(run.id) || this.children.has(run.id)) await this.cancelRun(run.id);
    else if (run.status === "queued" || run.status === "running") {
      throw new UserError(`run "${ref}" is ${run.status} in another process (not started by this server); stop that process first`, 409);
    }
    this.runs.delete(run.id);
    // a run whose folder is the runs root itself (a CLI run with --out runs) loses its row, never the root
    if (!this.roots.isRoot("run", run.runDir)) rmSync(run.runDir, { recursive: true, force: true });
    return { deleted: run.id };
  }

  /** SIGTERM, then SIGKILL after the grace period; resolves when the process is gone. */
  private async stop(child: Child): Promise<void> {
    child.kill("SIGTERM");
    const grace = this.options.killGraceMs ?? 3_000;
    const timer = setTimeout(() => child.kill("SIGKILL"), grace);
    await child.exited;
    clearTimeout(timer);
  }

  startEvaluation(request: EvaluateRequest): Evaluation {
    const fromRun = request.run !== undefined;
    const target = fromRun ? this.requireRun(request.run!).runDir : this.roots.resolve("model", request.modelDir!);
    this.pool.admit();
    const evaluation: Evaluation = { id: `eval-${newRunId().slice(4)}`, status: "queued", request, target, createdAt: Date.now(), finishedAt: null };
    this.evaluations.set(evaluation.id, evaluation);
    // a run's evaluation files go into its folder; a bare model folder (models root, HF cache) is only read
    const job = { target, dataset: request.dataset, split: request.split, limit: request.limit, db: this.options.dbPath, write: fromRun, sampling: samplingOf(request) };
    const finish = (fields: Partial<Evaluation>) => {
      if (evaluation.status === "cancelled") return;
      Object.assign(evaluation, fields, { finishedAt: Date.now() });
    };
    this.pool.submit(evaluation.id, () => {
      evaluation.status = "running";
      this.runWorker("evaluate", job, evaluation.id).then(
        (result) => finish({ status: "done", result }),
        (err: Error) => finish({ status: "failed", error: err.message }),
      );
    });
    return evaluation;
  }

  requireEvaluation(id: string): Evaluation {
    const evaluation = this.evaluations.get(id);
    if (!evaluation) throw new UserError(`no evaluation "${id}"`, 404);
    return evaluation;
  }

  async cancelEvaluation(id: string): Promise<Evaluation> {
    const evaluation = this.requireEvaluation(id);
    if (evaluation.status !== "queued" && evaluation.status !== "running") {
      throw new UserError(`evaluation "${id}" is ${evaluation.status}: there is nothing to cancel`, 409);
    }
    const queued = this.pool.drop(id);
    Object.assign(evaluation, { status: "cancelled", finishedAt: Date.now() });
    const child = this.children.get(id);
    if (!queued && child) await this.stop(child);
    return evaluation;
  }

  async deleteEvaluation(id: string): Promise<{ deleted: string }> {
    const evaluation = this.requireEvaluation(id);
    if (evaluation.status === "queued" || evaluation.status === "running") await this.cancelEvaluation(id);
    this.evaluations.delete(id);
    return { deleted: id };
  }

  async predict(request: PredictRequest): Promise<unknown> {
    const run = this.requireRun(request.run);
    if (run.status !== "done") throw new UserError(`run "${request.run}" is ${run.status}, not done: it has no final model yet`, 409);
    const key = `predict-${newRunId().slice(4)}`;
    const job = { target: run.runDir, question: request.question, choices: request.choices, sampling: samplingOf(request) };
    return await new Promise((resolve, reject) => {
      this.pool.submit(key, () => void this.runWorker("predict", job, key).then(resolve, reject));
    });
  }

  /**
   * Runs one request on an idle resident worker (or a new one), in the pool slot `submit` gave it (freed when it
   * answers or dies); a UserError in the worker is the request's fault (422), anything else a bug.
   */
  private async runWorker(task: WorkerTask, request: unknown, key: string): Promise<unknown> {
    let worker: InferenceWorker;
    try {
      worker = this.idleWorkers.pop() ?? new InferenceWorker(this.options.studentCache ?? 2, (gone) => this.forgetWorker(gone));
    } catch (err) {
      this.pool.done();
      throw err;
    }
    this.children.set(key, worker);
    try {
      const answer = await worker.request(task, request);
      if (answer.ok) return answer.result;
      const why = this.roots.redact(answer.error ?? "");
      if (answer.user) throw new UserError(why || `${task} failed`, 422);
      throw new Error(`${task} failed in the inference worker: ${why}`);
    } finally {
      this.children.delete(key);
      if (worker.alive && !this.closed) this.idleWorkers.push(worker);
      this.pool.done();
      this.trimIdleWorkers();
    }
  }

  /** A worker that exited (crashed, killed) is no longer offered work. */
  private forgetWorker(worker: InferenceWorker): void {
    const at = this.idleWorkers.indexOf(worker);
    if (at >= 0) this.idleWorkers.splice(at, 1);
  }

  /** Idle workers beyond the free process slots are stopped: the cap counts processes, not only requests. */
  private trimIdleWorkers(): void {
    while (this.idleWorkers.length > 0 && this.idleWorkers.length + this.pool.active > this.pool.max) this.idleWorkers.shift()!.kill();
  }

  /** Process ids of the resident inference workers waiting for work. */
  get idleWorkerPids(): number[] {
    return this.idleWorkers.map((w) => w.pid);
  }

  /**
   * Stops evaluation and prediction children; queued runs that never started are marked failed (nobody will start
   * them). Training runs already going on keep going: they register their own end.
   */
  close(): void {
    for (const key of this.pool.clear()) {
      if (this.store?.get(key)) this.store.markFailed(key, "the server stopped before this run started");
      const evaluation = this.evaluations.get(key);
      if (evaluation) Object.assign(evaluation, { status: "cancelled", finishedAt: Date.now() });
    }
    for (const [key, child] of this.children) if (!key.startsWith("run-")) child.kill();
    this.closed = true;
    for (const worker of this.idleWorkers.splice(0)) worker.kill();
  }
}

/** The generation settings of an evaluate or predict body (validated there by SamplingSchema). */
function samplingOf(request: { temperature: number; top_p: number; seed: number }) {
  return { temperature: request.temperature, top_p: request.top_p, seed: request.seed };
}

type WorkerTask = "evaluate" | "predict";

/**
 * The worker side: one JSON request per stdin line → one answer line on stdout, until stdin closes. A bug is
 * answered, then the process exits (code 70) so its device is not reused.
 */
async function serveMain(argv: string[]): Promise<number> {
  const at = argv.indexOf("--students");
  const capacity = at >= 0 ? Number(argv[at + 1]) : 2;
  const { evaluate, predict } = await import("../eval/index.ts");
  const { StudentCache } = await import("../eval/resident.ts");
  const { isUserError } = await import("../errors.ts");
  const students = new StudentCache(capacity);
  const answer = (a: Omit<WorkerAnswer, "cot">) => process.stdout.write(JSON.stringify({ cot: 1, ...a }) + "\n");
  let exitCode = 0;
  await forEachLine(Bun.stdin.stream(), async (raw) => {
    const line = raw.trim();
    if (!line) return;
    try {
      const { task, request } = JSON.parse(line) as { task: WorkerTask; request: Record<string, any> };
      const options = { db: request.db, sampling: request.sampling, students };
      let result: unknown;
      if (task === "evaluate") result = await evaluate(request.target, request.dataset, request.split, { ...options, limit: request.limit, write: request.write });
      else if (task === "predict") result = await predict(request.target, request.question, request.choices, options);
      else throw new Error(`unknown worker task "${task}"`);
      answer({ ok: true, result });
    } catch (err) {
      const user = isUserError(err);
      answer({ ok: false, user, error: (err as Error).message });
      if (!user) {
        console.error(err);
        exitCode = 70;
        return false;
      }
    }
  });
  await students.destroy();
  return exitCode;
}

if (import.meta.main) {
  try {
    const [task, ...rest] = process.argv.slice(2);
    if (task !== "serve") throw new Error(`usage: bun src/server/worker.ts serve [--students N] (got "${task ?? ""}")`);
    process.exitCode = await serveMain(rest);
  } catch (err) {
    console.error(err);
    process.exitCode = 70;
  }
}
