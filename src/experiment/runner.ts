/**
 * How one distillation run is trained and evaluated from here: as `bun src/cli.ts train …` and `… eval …` child
 * processes. A child per run keeps a GPU crash, a leak or a long run from taking the caller (a grid, the demo, the
 * HTTP server) down with it, and the train command is the one place that turns settings into a run.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { UserError } from "../errors.ts";
import { softwareAdapterEnv, PROJECT_ROOT } from "../gpu/runtime.ts";
import type { Placement } from "../distill/placement.ts";
import type { RationaleFilter, RationalePart, SampleMode } from "../distill/rationales.ts";
import type { Cell, CellRunner, CellSelection, TrainingOptions } from "./grid.ts";

export const CLI_PATH = join(PROJECT_ROOT, "src", "cli.ts");

/** Everything the train command needs for one run (a grid cell is one, so is a POST /v1/runs body). */
export interface TrainSpec {
  dataset: string;
  model: string;
  placement: Placement;
  selection: CellSelection;
  seed: number;
  epochs: number;
  limit?: number;
  rationales?: string;
  rationaleFilter?: RationaleFilter;
  samples?: SampleMode;
  rationaleTemplate?: string;
  rationalePart?: RationalePart;
  training: TrainingOptions;
  runDir: string;
  /** Shown in listings (default: the folder's name). */
  name?: string;
}

/** Steps between checkpoints unless a grid says otherwise: at most this much work is redone after a crash. */
export const DEFAULT_CHECKPOINT_EVERY = 50;

/** The train command's flags for a spec (see src/commands/train.ts). */
export function trainArgs(spec: TrainSpec, options: { db?: string; resume?: boolean } = {}): string[] {
  const { selection, training } = spec;
  const flags: Array<[string, string | number | undefined]> = [
    ["dataset", spec.dataset],
    ["model", spec.model],
    ["placement", spec.placement],
    ["selection", selection.kind],
    ["k", selection.k],
    ["p", selection.p],
    ["attribution", selection.attribution],
    ["attribution-model", selection.attributionModel],
    ["rationales", spec.rationales],
    ["rationale-filter", spec.rationaleFilter],
    ["samples", spec.samples],
    ["rationale-template", spec.rationaleTemplate],
    ["rationale-part", spec.rationalePart],
    ["seed", spec.seed],
    ["epochs", spec.epochs],
    ["limit", spec.limit],
    ["batch-size", training.batchSize],
    ["lr", training.lr],
    ["alpha", training.alpha],
    ["warmup-steps", training.warmupSteps],
    ["weight-decay", training.weightDecay],
    ["grad-clip", training.gradClip],
    ["max-tokens", training.maxTokens],
    ["checkpoint-every", training.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY],
    ["out", spec.runDir],
    ["name", spec.name],
    ["db", options.db],
  ];
  const args = ["train", ...flags.flatMap(([name, value]) => (value === undefined ? [] : [`--${name}`, String(value)]))];
  if (options.resume) args.push("--resume");
  return args;
}

export function evalArgs(target: string, dataset: string, split: string, options: { limit?: number; db?: string } = {}): string[] {
  const args = ["eval", "--run", target, "--dataset", dataset, "--split", split, "--json"];
  if (options.limit !== undefined) args.push("--limit", String(options.limit));
  if (options.db !== undefined) args.push("--db", options.db);
  return args;
}

/** The environment a CLI child needs: ours plus the software adapter when it is the only GPU. */
export function childEnv(extra: Record<string, string> = {}): Record<string, string | undefined> {
  return { ...process.env, ...softwareAdapterEnv(), COT_DISTILL_REEXEC: "1", ...extra };
}

/** `bun src/cli.ts <args>` as a child process; stdout/stderr as given (default: inherited). */
export function spawnCli(args: string[], io: { stdout?: "pipe" | "inherit" | "ignore"; stderr?: "pipe" | "inherit" | "ignore" | number } = {}) {
  return Bun.spawn([process.execPath, CLI_PATH, ...args], {
    cwd: process.cwd(),
    env: childEnv(),
    stdin: "ignore",
    stdout: io.stdout ?? "inherit",
    stderr: io.stderr ?? "inherit",
  });
}

export interface CliOutput {
  /** Hide the child's stderr (progress lines); its last line still explains a failure. */
  quiet?: boolean;
  /** Receives each stderr line instead of the terminal (e.g. to draw a progress bar). */
  onLine?: (line: string) => void;
}

/** Calls `onLine` per complete line of a stream; returns the whole text. */
async function forwardLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  let pending = "";
  const reader = stream.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    const chunk = decoder.decode(read.value, { stream: true });
    text += chunk;
    const lines = (pending + chunk).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) onLine(line);
  }
  if (pending) onLine(pending);
  return text;
}

/** The one-line error a CLI child printed last, without the program's prefix. */
export function lastErrorLine(stderr: string): string {
  return (stderr.trim().split("\n").at(-1) ?? "").replace(/^cot-distill: /, "");
}

/** Runs the CLI to the end; a non-zero exit becomes an error carrying the child's last stderr line. */
export async function runCli(args: string[], output: CliOutput = {}): Promise<string> {
  const piped = output.quiet || output.onLine !== undefined;
  const child = spawnCli(args, { stdout: "pipe", stderr: piped ? "pipe" : "inherit" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(child.stdout).text(),
    child.stderr instanceof ReadableStream ? forwardLines(child.stderr, output.onLine ?? (() => {})) : Promise.resolve(""),
    child.exited,
  ]);
  if (code !== 0) {
    const why = lastErrorLine(stderr);
    throw new UserError(`\`${args[0]}\` exited with code ${code}${why ? `: ${why}` : ""}`);
  }
  return stdout;
}

/** The eval command's --json summary (src/eval). */
export interface EvalSummary {
  accuracy: number;
  rankAccuracy?: number | null;
  n: number;
  [key: string]: unknown;
}

export function parseEvalSummary(stdout: string): EvalSummary {
  const line = stdout.trim().split("\n").at(-1) ?? "";
  const summary = JSON.parse(line) as EvalSummary;
  if (typeof summary.accuracy !== "number") throw new Error(`eval printed no accuracy: ${line.slice(0, 200)}`);
  return summary;
}

/** The last training loss and step count of a run folder (metrics.jsonl). */
export function finalTraining(runDir: string): { finalLoss?: number; steps?: number } {
  const path = join(runDir, "metrics.jsonl");
  if (!existsSync(path)) return {};
  const last = readFileSync(path, "utf8").trim().split("\n").at(-1);
  if (!last) return {};
  const m = JSON.parse(last) as { loss: number; step: number };
  return { finalLoss: m.loss, steps: m.step };
}

/** Trains and evaluates grid cells through the CLI, registering each run in the database at `db`. */
export function cliCellRunner(options: { db?: string; quiet?: boolean; onLine?: (cell: Cell, line: string) => void } = {}): CellRunner {
  const db = options.db === undefined ? undefined : resolve(options.db);
  const output = (cell: Cell): CliOutput => ({ quiet: options.quiet, onLine: options.onLine && ((line) => options.onLine?.(cell, line)) });
  return {
    async train(cell: Cell, resume: boolean) {
      await runCli(trainArgs(cell, { db, resume }), output(cell));
    },
    async evaluate(cell: Cell) {
      const summary = parseEvalSummary(
        await runCli(evalArgs(cell.runDir, cell.dataset, cell.evalSplit, { limit: cell.evalLimit, db }), output(cell)),
      );
      return { accuracy: summary.accuracy, rankAccuracy: summary.rankAccuracy, n: summary.n, ...finalTraining(cell.runDir) };
    },
  };
}
