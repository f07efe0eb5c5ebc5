/**
 * GPU work of the HTTP server, done in child processes so the server stays responsive (and survives a GPU crash):
 * training is `bun src/cli.ts train …` (which registers and updates its run in SQLite itself); evaluation and
 * prediction are this file run as a script, `bun src/server/worker.ts evaluate|predict`, reading one JSON request
 * on stdin and writing one JSON answer on stdout.
 *
 * Evaluation jobs are kept in memory: they are cheap to rerun, and their results also land in the run folder.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { UserError } from "../errors.ts";
import { CLI_PATH, childEnv, lastErrorLine, trainArgs } from "../experiment/runner.ts";
import { conditionName } from "../experiment/grid.ts";
import { openDatabase } from "../store/db.ts";
import { newRunId, RunStore, type RunRow } from "../store/runs.ts";
import type { EvaluateRequest, PredictRequest, RunRequest } from "./routes/run-schemas.ts";

const WORKER_PATH = import.meta.path;

export interface SupervisorOptions {
  /** The run index; default: opened on `dbPath` when first needed (an app that never sees a run route opens nothing). */
  runs?: RunStore;
  /** The database the training children register their runs in: the server's own. */
  dbPath: string;
  /** Where runs started over HTTP get their folders (default runs/http). */
  runsRoot?: string;
  /** Folder of experiment grids (`<root>/<grid>/results.json`) the dashboard shows (default runs). */
  experimentsRoot?: string;
  /** How long POST /v1/runs waits for the train command to accept its settings before answering 202 anyway. */
  acceptTimeoutMs?: number;
}

export type EvaluationStatus = "running" | "done" | "failed";

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

export class RunSupervisor {
  readonly evaluations = new Map<string, Evaluation>();
  private readonly children = new Set<{ kill(): void }>();
  private store: RunStore | undefined;

  constructor(private readonly options: SupervisorOptions) {
    this.store = options.runs;
  }

  get experimentsRoot(): string {
    return this.options.experimentsRoot ?? "runs";
  }

  get runs(): RunStore {
    this.store ??= new RunStore(openDatabase(this.options.dbPath));
    return this.store;
  }

  /** A run by id, name or folder; 404 otherwise. */
  requireRun(ref: string): RunRow {
    const run = this.runs.find(ref);
    if (!run) throw new UserError(`no run "${ref}"`, 404);
    return run;
  }

  /**
   * Registers the run (queued), starts `train` in a child and waits until the train command has accepted the
   * settings (the run turns "running") — so bad settings that only the data can reveal (k larger than a rationale,
   * an unknown model) are still answered 400 — or until acceptTimeoutMs passes.
   */
  async startRun(request: RunRequest): Promise<RunRow> {
    const name = request.name ?? defaultRunName(request);
    const id = newRunId();
    const runDir = resolve(this.options.runsRoot ?? join("runs", "http"), `${name}-${id}`);
    mkdirSync(runDir, { recursive: true });
    const spec = { ...request, name };
    const run = this.runs.register({ id, name, runDir, config: { spec, source: "http" } });
    const log = join(runDir, "train.log");
    const fd = openSync(log, "a");
    const child = Bun.spawn([process.execPath, CLI_PATH, ...trainArgs(spec, runDir, { db: this.options.dbPath })], {
      env: childEnv(),
      stdin: "ignore",
      stdout: fd,
      stderr: fd,
    });
    closeSync(fd);
    this.children.add(child);
    const exited = child.exited.then((code) => {
      this.children.delete(child);
      const now = this.runs.get(id);
      if (now && (now.status === "queued" || now.status === "running")) {
        this.runs.markFailed(id, logError(log) || `train exited with code ${code}`);
      }
      return code;
    });
    const code = await this.untilAccepted(id, exited);
    if (code === 1) throw new UserError(this.runs.get(id)?.error ?? "the train command refused these settings", 400);
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

  startEvaluation(request: EvaluateRequest): Evaluation {
    const target = request.run !== undefined ? this.requireRun(request.run).runDir : requireModelDir(request.modelDir as string);
    const evaluation: Evaluation = { id: `eval-${newRunId().slice(4)}`, status: "running", request, target, createdAt: Date.now(), finishedAt: null };
    this.evaluations.set(evaluation.id, evaluation);
    const job = { target, dataset: request.dataset, split: request.split, limit: request.limit, db: this.options.dbPath };
    void this.runWorker("evaluate", job).then(
      (result) => Object.assign(evaluation, { status: "done", result, finishedAt: Date.now() }),
      (err: Error) => Object.assign(evaluation, { status: "failed", error: err.message, finishedAt: Date.now() }),
    );
    return evaluation;
  }

  requireEvaluation(id: string): Evaluation {
    const evaluation = this.evaluations.get(id);
    if (!evaluation) throw new UserError(`no evaluation "${id}"`, 404);
    return evaluation;
  }

  async predict(request: PredictRequest): Promise<unknown> {
    const run = this.requireRun(request.run);
    if (run.status !== "done") throw new UserError(`run "${request.run}" is ${run.status}, not done: it has no final model yet`, 409);
    return this.runWorker("predict", { target: run.runDir, question: request.question, choices: request.choices });
  }

  /** Runs this file as a script on one request; its exit code 1 is a UserError (bad input), others are bugs. */
  private async runWorker(task: WorkerTask, request: unknown): Promise<unknown> {
    const child = Bun.spawn([process.execPath, WORKER_PATH, task], { env: childEnv(), stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    this.children.add(child);
    child.stdin.write(JSON.stringify(request));
    await child.stdin.end();
    const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
    this.children.delete(child);
    if (code === 0) return JSON.parse(stdout);
    const why = lastErrorLine(stderr);
    if (code === 1) throw new UserError(why || `${task} failed`, 422);
    throw new Error(`${task} worker exited with code ${code}: ${why}`);
  }

  /** Stops evaluation and prediction children (training runs go on: they register their own end). */
  close(): void {
    for (const child of this.children) child.kill();
  }
}

function requireModelDir(dir: string): string {
  const path = resolve(dir);
  if (!existsSync(join(path, "config.json"))) throw new UserError(`no model folder "${dir}" (a folder with config.json)`, 404);
  return path;
}

type WorkerTask = "evaluate" | "predict";

/** The child side: one request on stdin → one JSON answer on stdout; a UserError → its message, exit 1. */
async function workerMain(task: string): Promise<number> {
  const request = JSON.parse(await new Response(Bun.stdin.stream()).text());
  const { evaluate, predict } = await import("../eval/index.ts");
  let answer: unknown;
  if (task === "evaluate") answer = await evaluate(request.target, request.dataset, request.split, { limit: request.limit, db: request.db });
  else if (task === "predict") answer = await predict(request.target, request.question, request.choices);
  else throw new Error(`unknown worker task "${task}"`);
  process.stdout.write(JSON.stringify(answer));
  return 0;
}

if (import.meta.main) {
  try {
    process.exitCode = await workerMain(process.argv[2] ?? "");
  } catch (err) {
    const { isUserError } = await import("../errors.ts");
    console.error(isUserError(err) ? `cot-distill: ${err.message}` : err);
    process.exitCode = isUserError(err) ? 1 : 70;
  }
}
