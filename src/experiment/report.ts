/**
 * A grid's report in its folder: the results tables (results.md/.csv/.json: accuracy mean ± 95% CI per condition
 * over seeds, ./results.ts) and two charts (./plots.ts): accuracy per condition with CI whiskers, and the training
 * loss of each condition averaged over its seeds step by step.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { readMetrics } from "../train/metrics.ts";
import { comparePaired, comparisonsMarkdown, type Outcomes, type PairedComparison } from "./compare.ts";
import { conditionName, expandGrid, gridDir, UNTRAINED, type Cell, type CellResult, type Grid } from "./grid.ts";
import { accuracyBarChart, comparisonChart, lossLineChart, writeChart, type Series } from "./plots.ts";
import { summarize, toMarkdown, writeResultTables, type Condition, type RunAccuracy } from "./results.ts";

/** The factors a condition is tabulated by: dataset and model only when the grid varies them. */
function conditionOf(grid: Grid, result: CellResult): Condition {
  const condition: Condition = {};
  if (grid.datasets.length > 1) condition.dataset = result.dataset;
  if (grid.models.length > 1) condition.model = result.model;
  condition.condition = result.untrained ? UNTRAINED : conditionName(result.placement, result.selection, result.alpha);
  return condition;
}

export function toRunAccuracies(grid: Grid, results: CellResult[]): RunAccuracy[] {
  return results.map((r) => ({ condition: conditionOf(grid, r), seed: r.seed, accuracy: r.accuracy }));
}

/** Mean loss per step over the seeds of each condition (seeds of one condition train the same number of steps). */
export function lossSeries(cells: Cell[]): Series[] {
  const byCondition = new Map<string, Map<number, number[]>>();
  for (const cell of cells) {
    const steps = byCondition.get(cell.condition) ?? new Map<number, number[]>();
    byCondition.set(cell.condition, steps);
    for (const m of readMetrics(join(cell.runDir, "metrics.jsonl"))) steps.set(m.step, [...(steps.get(m.step) ?? []), m.loss]);
  }
  return [...byCondition.entries()]
    .filter(([, steps]) => steps.size > 0)
    .map(([name, steps]) => ({
      name,
      points: [...steps.entries()].sort((a, b) => a[0] - b[0]).map(([step, losses]) => ({ step, value: losses.reduce((s, l) => s + l, 0) / losses.length })),
    }));
}

/** Per-item correctness of each condition by seed, read from the cells' eval-<split>.jsonl. */
export function cellOutcomes(cells: Cell[]): Map<string, Outcomes> {
  const byCondition = new Map<string, Outcomes>();
  for (const cell of cells) {
    const path = join(cell.runDir, `eval-${cell.evalSplit}.jsonl`);
    if (!existsSync(path)) continue;
    const outcomes = byCondition.get(cell.condition) ?? new Map();
    byCondition.set(cell.condition, outcomes);
    const items = new Map<string, boolean>();
    for (const line of readFileSync(path, "utf8").split("\n")) {
      if (!line.trim()) continue;
      const p = JSON.parse(line) as { id: string; correct: boolean };
      items.set(p.id, p.correct);
    }
    outcomes.set(cell.seed, items);
  }
  return byCondition;
}

/**
 * The pairs a grid compares: those it names, or by default each condition against label-only training ("none") of
 * the same dataset and model, and each token selection against the full rationale of its placement.
 */
export function comparisonPairs(grid: Grid, cells: Cell[]): Array<[string, string]> {
  // names are checked against the whole grid: a report over some finished cells compares what it can
  const names = new Set(expandGrid(grid).map((c) => c.condition));
  if (grid.comparisons) {
    for (const name of grid.comparisons.flat()) {
      if (!names.has(name)) throw new UserError(`comparison names condition "${name}", which the grid does not have (it has: ${[...names].join(", ")})`);
    }
    return grid.comparisons.map(([a, b]) => [a, b]);
  }
  const pairs: Array<[string, string]> = [];
  const seen = new Set<string>();
  const add = (a: string | undefined, b: string | undefined) => {
    if (a && b && a !== b && !seen.has(`${a}\0${b}`)) {
      seen.add(`${a}\0${b}`);
      pairs.push([a, b]);
    }
  };
  const find = (like: Cell, placement: string, kind: string) =>
    cells.find((c) => c.dataset === like.dataset && c.model === like.model && c.placement === placement && c.selection.kind === kind && !c.untrained)?.condition;
  for (const cell of cells) {
    if (cell.untrained) continue;
    if (cell.selection.kind !== "full") add(cell.condition, find(cell, cell.placement, "full"));
    if (cell.placement !== "none") add(cell.condition, find(cell, "none", "full"));
  }
  return pairs;
}

export function gridComparisons(grid: Grid, cells: Cell[]): PairedComparison[] {
  const outcomes = cellOutcomes(cells);
  return comparisonPairs(grid, cells)
    .filter(([a, b]) => outcomes.has(a) && outcomes.has(b))
    .map(([a, b]) => comparePaired(a, outcomes.get(a)!, b, outcomes.get(b)!));
}

/** Chance accuracy of the evaluated items: 1 / number of choices (null for open answers). */
export function chanceLevel(cells: Cell[]): number | null {
  for (const cell of cells) {
    const path = join(cell.runDir, `eval-${cell.evalSplit}.jsonl`);
    if (!existsSync(path)) continue;
    const first = readFileSync(path, "utf8").split("\n")[0];
    if (!first) continue;
    const scores = (JSON.parse(first) as { choiceLogProbs: Record<string, number> | null }).choiceLogProbs;
    return scores ? 1 / Object.keys(scores).length : null;
  }
  return null;
}

export interface GridReport {
  /** The Markdown results table, for printing. */
  markdownTable: string;
  /** The paired comparisons (also in results.md/.json and comparisons.csv). */
  comparisons: PairedComparison[];
  comparisonsTable: string;
  chance: number | null;
  /** File names written into the grid's folder. */
  written: string[];
}

export async function writeGridReport(grid: Grid, cells: Cell[], results: CellResult[], root: string): Promise<GridReport> {
  const dir = gridDir(grid, root);
  const runs = toRunAccuracies(grid, results);
  const summary = summarize(runs);
  const comparisons = gridComparisons(grid, cells);
  const chance = chanceLevel(cells);
  const files = [
    ...(await writeResultTables(runs, dir, { comparisons, chance })),
    ...(await writeChart(accuracyBarChart(summary, `${grid.name}: accuracy by condition (mean ± 95% CI over seeds)`, chance), join(dir, "accuracy"))),
    ...(await writeChart(lossLineChart(lossSeries(cells), `${grid.name}: training loss (mean over seeds)`), join(dir, "loss"))),
  ];
  if (comparisons.length) {
    files.push(...(await writeChart(comparisonChart(comparisons, `${grid.name}: paired differences (95% CI over items)`), join(dir, "comparisons"))));
  }
  return {
    markdownTable: toMarkdown(summary),
    comparisons,
    comparisonsTable: comparisons.length ? comparisonsMarkdown(comparisons) : "",
    chance,
    written: files.map((f) => f.slice(dir.length + 1)),
  };
}
