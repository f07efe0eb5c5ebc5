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
import { Alpha, Epochs, ItemLimit, Seed } from "../bounds.ts";
import { UserError } from "../errors.ts";
import { PLACEMENTS, type Placement } from "../distill/placement.ts";
import { RationaleChoiceSchema, type RunSpec, SelectionSchema, type SelectionSpec, TrainingSchema } from "../distill/run-spec.ts";

const PlainName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_.-]{0,63}$/, "use lower-case letters, digits, '.', '_' or '-'"));
const PlacementName = v.picklist(PLACEMENTS, `placement must be one of: ${PLACEMENTS.join(", ")}`);
const PlacementList = v.pipe(v.array(PlacementName), v.minLength(1));

/** Which placements a selection combines with (default: every placement of the grid that carries a rationale). */
const restrict = { placements: v.optional(PlacementList) };

/** A grid's selection: a run's (src/distill/run-spec.ts), optionally restricted to some placements. */
export type GridSelection = SelectionSpec & { placements?: Placement[] };

type ObjectOption = { type: string; entries: Record<string, v.GenericSchema>; pipe?: unknown[] };
/** Each option of the run's selection schema, with the grid's "placements" added to its fields. */
const GridSelectionSchema = v.variant(
  "kind",
  (SelectionSchema.options as unknown as ObjectOption[]).map((option) => {
    if (!option.pipe) return v.strictObject({ ...option.entries, ...restrict });
    const [object, ...checks] = option.pipe as [ObjectOption, ...unknown[]];
    return (v.pipe as (...items: unknown[]) => unknown)(v.strictObject({ ...object.entries, ...restrict }), ...checks);
  }) as unknown as typeof SelectionSchema.options,
  SelectionSchema.message,
) as unknown as v.GenericSchema<unknown, GridSelection>;

const GridInput = v.strictObject({
  name: PlainName,
  dataset: v.optional(PlainName),
  datasets: v.optional(v.pipe(v.array(PlainName), v.minLength(1))),
  /** A from-scratch size ("scratch-micro", "scratch-small" …) or a Hugging Face model folder / hub id in the HF cache. */
  model: v.optional(v.pipe(v.string(), v.minLength(1))),
  models: v.optional(v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1))),
  placements: PlacementList,
  selections: v.optional(v.pipe(v.array(GridSelectionSchema), v.minLength(1)), [{ kind: "full" }]),
  seeds: v.optional(v.pipe(v.array(Seed), v.minLength(1)), [0]),
  epochs: Epochs,
  /** Training items used (the first N of the train split). */
  limit: v.optional(ItemLimit),
  ...RationaleChoiceSchema.entries,
  evalSplit: v.optional(v.pipe(v.string(), v.minLength(1)), "test"),
  evalLimit: v.optional(ItemLimit),
  training: v.optional(TrainingSchema, {}),
  /** Rationale loss weights to sweep: each condition with a rationale is run once per α (named "-a<α>"). */
  alphas: v.optional(v.pipe(v.array(Alpha), v.minLength(1))),
  /** Add an "untrained" row: the initial student (same seed) evaluated without training. */
  untrained: v.optional(v.boolean(), false),
  /** Paired comparisons to report, as [condition, baseline] names (default: every condition vs "none", and each
   * selection vs the full rationale of its placement). */
  comparisons: v.optional(v.array(v.tuple([v.pipe(v.string(), v.minLength(1)), v.pipe(v.string(), v.minLength(1))]))),
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

/** One run of the grid: a train spec plus where it sits in the grid and how it is evaluated. */
export type Cell = RunSpec & {
  /** Folder name under the grid's folder: `<condition>-s<seed>`. */
  name: string;
  /** Everything but the seed: results are averaged over seeds per condition. */
  condition: string;
  evalSplit: string;
  evalLimit?: number;
  /** Where the run is trained. */
  runDir: string;
};

/** The run a cell trains: its spec, without where it sits in the grid. */
export function cellSpec({ condition, runDir, evalSplit, evalLimit, ...spec }: Cell): RunSpec {
  return spec;
}

/** What a finished cell leaves in `result.json`. */
export interface CellResult {
  cell: string;
  condition: string;
  dataset: string;
  model: string;
  placement: Placement;
  selection: SelectionSpec;
  seed: number;
  /** The initial student, evaluated without training. */
  untrained?: boolean;
  /** The rationale loss weight, when the grid sweeps it. */
  alpha?: number;
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

function selectionName(s: SelectionSpec): string {
  if (s.kind === "key") return `key-${s.k}${s.attribution && s.attribution !== "idf" ? `-${s.attribution}` : ""}`;
  if (s.kind === "masked") return `masked-${s.p}`;
  if (s.kind === "shuffled" && s.unit && s.unit !== "token") return `shuffled-${s.unit}`;
  return s.kind;
}

/** "after-shuffled", "before", "none": the paper's condition names (full selection is the unmarked case); "-a0.5" for a swept α. */
export function conditionName(placement: Placement, selection: SelectionSpec, alpha?: number): string {
  const base = placement === "none" || selection.kind === "full" ? placement : `${placement}-${selectionName(selection)}`;
  return alpha === undefined || placement === "none" ? base : `${base}-a${alpha}`;
}

/** A model folder is named by its last path part, a preset by itself. */
function modelLabel(model: string): string {
  return basename(resolve(model)).toLowerCase().replace(/[^a-z0-9_.-]+/g, "-");
}

/** The placement × selection pairs of a grid, "none" once (it has no rationale to select from). */
function conditions(grid: Grid): Array<{ placement: Placement; selection: SelectionSpec; untrained?: boolean }> {
  const pairs: Array<{ placement: Placement; selection: SelectionSpec; untrained?: boolean }> = [];
  if (grid.untrained) pairs.push({ placement: "none", selection: { kind: "full" }, untrained: true });
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
    const name = c.untrained ? UNTRAINED : conditionName(c.placement, c.selection);
    return !seen.has(name) && seen.add(name);
  });
}

/** The condition name of the initial student evaluated without training. */
export const UNTRAINED = "untrained";

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
      for (const { placement, selection, untrained } of conditions(grid)) {
        // an α sweep multiplies the conditions that have rationale tokens to weigh
        const alphas: Array<number | undefined> = grid.alphas && placement !== "none" ? grid.alphas : [undefined];
        for (const alpha of alphas) {
          const own = untrained ? UNTRAINED : conditionName(placement, selection, alpha);
          const condition = [prefix(dataset, model), own].filter(Boolean).join("-");
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
              training: alpha === undefined ? grid.training : { ...grid.training, alpha },
              ...(untrained ? { untrained } : {}),
              runDir: join(gridDir(grid, root), name),
            });
          }
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
      ...(cell.untrained ? { untrained: true } : {}),
      ...(cell.training.alpha !== undefined && cell.condition.endsWith(`-a${cell.training.alpha}`) ? { alpha: cell.training.alpha } : {}),
      ...evaluation,
      settings: cellSettings(cell),
    };
    writeCellResult(cell, result);
    results.push(result);
    onEvent({ kind: "done", cell, index, total, result });
  }
  return results;
}
