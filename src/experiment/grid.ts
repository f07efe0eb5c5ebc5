/**
 * Experiment grids: one JSON file names datasets × models × conditions (rationale placement × token selection) ×
 * seeds, and expands to cells, each one distillation run (train → eval) in `<root>/<grid>/<cell>-s<seed>/`.
 *
 * A cell is finished when its `result.json` exists; running a grid again skips finished cells and resumes an
 * interrupted one from its latest checkpoint, so a grid killed at any point costs at most one cell's progress.
 * How a cell is trained and evaluated is a `CellRunner` (the real one is in ./runner.ts), so expansion and
 * resumption are testable without a GPU.
 */
import { existsSync, readFileSync, writeFileSync, mkdirSync, renameSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import * as v from "valibot";
import { Alpha, BatchSize, CheckpointEvery, Epochs, Fraction, GradClip, ItemLimit, KeyTokens, LearningRate, SequenceTokens, Seed, WarmupSteps, WeightDecay } from "../bounds.ts";
import { UserError } from "../errors.ts";
import { PLACEMENTS, type Placement } from "../distill/placement.ts";
import type { SelectionKind } from "../distill/selection.ts";
import { RATIONALE_FILTERS, RATIONALE_PARTS, SAMPLE_MODES } from "../distill/rationales.ts";
import { ATTRIBUTIONS, type AttributionKind } from "../distill/train.ts";
import type { TrainSpec } from "./runner.ts";

const PlainName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, "use lower-case letters, digits, '.', '_' or '-'"));
const PlacementName = v.picklist(PLACEMENTS, `placement must be one of: ${PLACEMENTS.join(", ")}`);
const PlacementList = v.pipe(v.array(PlacementName), v.minLength(1));

/** Which placements a selection combines with (default: every placement of the grid that carries a rationale). */
const restrict = { placements: v.optional(PlacementList) };
export const SelectionSpecSchema = v.variant(
  "kind",
  [
    v.strictObject({ kind: v.picklist(["full", "shuffled", "random"]), ...restrict }),
    v.pipe(
      v.strictObject({
        kind: v.literal("key"),
        k: KeyTokens,
        /** Who scores the tokens: the model-free baseline (idf, default) or gradient × input of a trained student. */
        attribution: v.optional(v.picklist(ATTRIBUTIONS, `attribution must be one of: ${ATTRIBUTIONS.join(", ")}`)),
        /** The student (run or model folder) whose saliency scores the tokens. */
        attributionModel: v.optional(v.pipe(v.string(), v.minLength(1))),
        ...restrict,
      }),
      v.forward(v.check((s) => s.attribution !== "saliency" || s.attributionModel !== undefined, 'attribution "saliency" needs attributionModel'), ["attributionModel"]),
    ),
    v.strictObject({
      kind: v.literal("masked"),
      p: Fraction,
      ...restrict,
    }),
  ],
  'selection kind must be one of: full, shuffled, random, key (with "k"), masked (with "p")',
);
export type SelectionSpec = v.InferOutput<typeof SelectionSpecSchema>;

/** Where a run's rationales come from and which answers train (src/distill/rationales.ts): grids and POST /v1/runs. */
export const RationaleChoiceSchema = v.object({
  /** A teacher model in the rationale store, "palm" (the shipped PaLM-540B ones, default), or a JSON-lines file. */
  rationales: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000))),
  /** agree (default): answers whose label equals gold; any: every answer. */
  rationaleFilter: v.optional(v.picklist(RATIONALE_FILTERS, `rationaleFilter must be one of: ${RATIONALE_FILTERS.join(", ")}`)),
  /** Several samples per item: first (default), all, majority (self-consistency). */
  samples: v.optional(v.picklist(SAMPLE_MODES, `samples must be one of: ${SAMPLE_MODES.join(", ")}`)),
  /** Template version of a store source (default: that teacher's newest). */
  rationaleTemplate: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(200))),
  /** Which part of a stored answer trains: explanation (default), reasoning, both. */
  rationalePart: v.optional(v.picklist(RATIONALE_PARTS, `rationalePart must be one of: ${RATIONALE_PARTS.join(", ")}`)),
});

/** Options passed through to every run of the grid (the train command's flags). */
export const TrainingOptionsSchema = v.strictObject({
  batchSize: v.optional(BatchSize),
  lr: v.optional(LearningRate),
  /** Loss weight of rationale tokens. */
  alpha: v.optional(Alpha),
  warmupSteps: v.optional(WarmupSteps),
  weightDecay: v.optional(WeightDecay),
  gradClip: v.optional(GradClip),
  /** Longest training sequence in tokens (longer examples are cut). */
  maxTokens: v.optional(SequenceTokens),
  /** Steps between checkpoints: what an interrupted run loses at most (default 50). */
  checkpointEvery: v.optional(CheckpointEvery),
});
export type TrainingOptions = v.InferOutput<typeof TrainingOptionsSchema>;

const GridInput = v.strictObject({
  name: PlainName,
  dataset: v.optional(PlainName),
  datasets: v.optional(v.pipe(v.array(PlainName), v.minLength(1))),
  /** A from-scratch size ("scratch-micro", "scratch-small" …) or a Hugging Face model folder / hub id in the HF cache. */
  model: v.optional(v.pipe(v.string(), v.minLength(1))),
  models: v.optional(v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1))),
  placements: PlacementList,
  selections: v.optional(v.pipe(v.array(SelectionSpecSchema), v.minLength(1)), [{ kind: "full" }]),
  seeds: v.optional(v.pipe(v.array(Seed), v.minLength(1)), [0]),
  epochs: Epochs,
  /** Training items used (the first N of the train split). */
  limit: v.optional(ItemLimit),
  ...RationaleChoiceSchema.entries,
  evalSplit: v.optional(v.pipe(v.string(), v.minLength(1)), "test"),
  evalLimit: v.optional(ItemLimit),
  training: v.optional(TrainingOptionsSchema, {}),
});

export const GridSchema = v.pipe(
  GridInput,
  v.check((g) => (g.dataset === undefined) !== (g.datasets === undefined), 'give exactly one of "dataset" or "datasets"'),
  v.check((g) => (g.model === undefined) !== (g.models === undefined), 'give exactly one of "model" or "models"'),
  v.transform(({ dataset, datasets, model, models, ...rest }) => ({
    ...rest,
    datasets: datasets ?? [dataset as string],
    models: models ?? [model as string],
  })),
);
export type Grid = v.InferOutput<typeof GridSchema>;

export interface CellSelection {
  kind: SelectionKind;
  k?: number;
  p?: number;
  attribution?: AttributionKind;
  attributionModel?: string;
}

/** One run of the grid: a train spec plus where it sits in the grid and how it is evaluated. */
export interface Cell extends TrainSpec {
  /** Folder name under the grid's folder: `<condition>-s<seed>`. */
  name: string;
  /** Everything but the seed: results are averaged over seeds per condition. */
  condition: string;
  evalSplit: string;
  evalLimit?: number;
}

/** What a finished cell leaves in `result.json`. */
export interface CellResult {
  cell: string;
  condition: string;
  dataset: string;
  model: string;
  placement: Placement;
  selection: CellSelection;
  seed: number;
  accuracy: number;
  rankAccuracy?: number | null;
  /** Evaluated examples. */
  n: number;
  finalLoss?: number;
  steps?: number;
  /** What the cell was run with: a later grid asking for other settings in the same folder is refused. */
  settings?: CellSettings;
}

export type CellSettings = Omit<Cell, "name" | "condition" | "runDir">;

export function cellSettings({ name, condition, runDir, ...settings }: Cell): CellSettings {
  return settings;
}

/** A finished cell is reused only for the same settings; anything else would mix results of different runs. */
function checkSameSettings(cell: Cell, finished: CellResult): void {
  if (!finished.settings || JSON.stringify(finished.settings) === JSON.stringify(cellSettings(cell))) return;
  const was = finished.settings as unknown as Record<string, unknown>;
  const now = cellSettings(cell) as unknown as Record<string, unknown>;
  const differ = Object.keys({ ...was, ...now }).filter((k) => JSON.stringify(was[k]) !== JSON.stringify(now[k]));
  throw new UserError(
    `${cell.runDir} holds a result for other settings (${differ.join(", ")} differ): delete that folder or use another output folder`,
    409,
  );
}

export interface CellRunner {
  /** Trains the cell into cell.runDir; `resume`: the folder holds an interrupted run of this cell. */
  train(cell: Cell, resume: boolean): Promise<void>;
  evaluate(cell: Cell): Promise<Omit<CellResult, keyof Cell | "cell">>;
}

export function parseGrid(json: unknown, source = "grid"): Grid {
  const result = v.safeParse(GridSchema, json);
  if (result.success) return result.output;
  const first = result.issues[0];
  const where = v.getDotPath(first);
  throw new UserError(`${source}: ${where ? `${where}: ` : ""}${first.message}`, 400, result.issues.map((i) => ({ path: v.getDotPath(i) ?? "", message: i.message })));
}

export function readGrid(path: string): Grid {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new UserError(`${path}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
  return parseGrid(json, path);
}

function selectionName(s: CellSelection): string {
  if (s.kind === "key") return `key-${s.k}${s.attribution === "saliency" ? "-saliency" : ""}`;
  if (s.kind === "masked") return `masked-${s.p}`;
  return s.kind;
}

/** "after-shuffled", "before", "none": the paper's condition names (full selection is the unmarked case). */
export function conditionName(placement: Placement, selection: CellSelection): string {
  return placement === "none" || selection.kind === "full" ? placement : `${placement}-${selectionName(selection)}`;
}

/** A model folder is named by its last path part, a preset by itself. */
function modelLabel(model: string): string {
  return basename(resolve(model)).toLowerCase().replace(/[^a-z0-9_.-]+/g, "-");
}

/** The placement × selection pairs of a grid, "none" once (it has no rationale to select from). */
function conditions(grid: Grid): Array<{ placement: Placement; selection: CellSelection }> {
  const pairs: Array<{ placement: Placement; selection: CellSelection }> = [];
  for (const placement of grid.placements) {
    if (placement === "none") {
      pairs.push({ placement, selection: { kind: "full" } });
      continue;
    }
    for (const { placements, ...selection } of grid.selections) {
      if (!placements || placements.includes(placement)) pairs.push({ placement, selection });
    }
  }
  const seen = new Set<string>();
  return pairs.filter((c) => {
    const name = conditionName(c.placement, c.selection);
    return !seen.has(name) && seen.add(name);
  });
}

export function gridDir(grid: Grid, root: string): string {
  return join(root, grid.name);
}

/** The cross product datasets × models × conditions × seeds, in that nesting order. */
export function expandGrid(grid: Grid, root = "runs"): Cell[] {
  const prefix = (dataset: string, model: string) =>
    [grid.datasets.length > 1 ? dataset : "", grid.models.length > 1 ? modelLabel(model) : ""].filter(Boolean).join("-");
  const cells: Cell[] = [];
  for (const dataset of grid.datasets) {
    for (const model of grid.models) {
      for (const { placement, selection } of conditions(grid)) {
        const condition = [prefix(dataset, model), conditionName(placement, selection)].filter(Boolean).join("-");
        for (const seed of grid.seeds) {
          const name = `${condition}-s${seed}`;
          cells.push({
            name,
            condition,
            dataset,
            model,
            placement,
            selection,
            seed,
            epochs: grid.epochs,
            limit: grid.limit,
            rationales: grid.rationales,
            rationaleFilter: grid.rationaleFilter,
            samples: grid.samples,
            rationaleTemplate: grid.rationaleTemplate,
            rationalePart: grid.rationalePart,
            evalSplit: grid.evalSplit,
            evalLimit: grid.evalLimit,
            training: grid.training,
            runDir: join(gridDir(grid, root), name),
          });
        }
      }
    }
  }
  return cells;
}

export const RESULT_FILE = "result.json";

export function readCellResult(cell: Pick<Cell, "runDir">): CellResult | null {
  const path = join(cell.runDir, RESULT_FILE);
  return existsSync(path) ? (JSON.parse(readFileSync(path, "utf8")) as CellResult) : null;
}

/** Written last and atomically: its presence is what "finished" means. */
function writeCellResult(cell: Cell, result: CellResult): void {
  mkdirSync(cell.runDir, { recursive: true });
  const path = join(cell.runDir, RESULT_FILE);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

export type CellEvent =
  | { kind: "skip"; cell: Cell; index: number; total: number; result: CellResult }
  | { kind: "start"; cell: Cell; index: number; total: number; resume: boolean }
  | { kind: "done"; cell: Cell; index: number; total: number; result: CellResult };

/**
 * Runs every unfinished cell in order and returns all results (finished earlier or now). A cell folder without a
 * result holds an interrupted run: it is resumed, not restarted.
 */
export async function runGrid(cells: Cell[], runner: CellRunner, onEvent: (e: CellEvent) => void = () => {}): Promise<CellResult[]> {
  const results: CellResult[] = [];
  for (const [index, cell] of cells.entries()) {
    const total = cells.length;
    const finished = readCellResult(cell);
    if (finished) {
      checkSameSettings(cell, finished);
      results.push(finished);
      onEvent({ kind: "skip", cell, index, total, result: finished });
      continue;
    }
    const resume = existsSync(cell.runDir);
    onEvent({ kind: "start", cell, index, total, resume });
    await runner.train(cell, resume);
    const evaluation = await runner.evaluate(cell);
    const result: CellResult = {
      cell: cell.name,
      condition: cell.condition,
      dataset: cell.dataset,
      model: cell.model,
      placement: cell.placement,
      selection: cell.selection,
      seed: cell.seed,
      ...evaluation,
      settings: cellSettings(cell),
    };
    writeCellResult(cell, result);
    results.push(result);
    onEvent({ kind: "done", cell, index, total, result });
  }
  return results;
}
