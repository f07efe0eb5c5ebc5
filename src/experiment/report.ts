/**
 * A grid's report in its folder: the results tables (results.md/.csv/.json: accuracy mean ± 95% CI per condition
 * over seeds, ./results.ts) and two charts (./plots.ts): accuracy per condition with CI whiskers, and the training
 * loss of each condition averaged over its seeds step by step.
 */
import { join } from "node:path";
import { readMetrics } from "../train/metrics.ts";
import { conditionName, gridDir, type Cell, type CellResult, type Grid } from "./grid.ts";
import { accuracyBarChart, lossLineChart, writeChart, type Series } from "./plots.ts";
import { summarize, toMarkdown, writeResultTables, type Condition, type RunResult } from "./results.ts";

/** The factors a condition is tabulated by: dataset and model only when the grid varies them. */
function conditionOf(grid: Grid, result: CellResult): Condition {
  const condition: Condition = {};
  if (grid.datasets.length > 1) condition.dataset = result.dataset;
  if (grid.models.length > 1) condition.model = result.model;
  condition.condition = conditionName(result.placement, result.selection);
  return condition;
}

export function toRunResults(grid: Grid, results: CellResult[]): RunResult[] {
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

export interface GridReport {
  /** The Markdown results table, for printing. */
  markdownTable: string;
  /** File names written into the grid's folder. */
  written: string[];
}

export async function writeGridReport(grid: Grid, cells: Cell[], results: CellResult[], root: string): Promise<GridReport> {
  const dir = gridDir(grid, root);
  const runs = toRunResults(grid, results);
  const summary = summarize(runs);
  const files = [
    ...(await writeResultTables(runs, dir)),
    ...(await writeChart(accuracyBarChart(summary, `${grid.name}: accuracy by condition (mean ± 95% CI)`), join(dir, "accuracy"))),
    ...(await writeChart(lossLineChart(lossSeries(cells), `${grid.name}: training loss (mean over seeds)`), join(dir, "loss"))),
  ];
  return { markdownTable: toMarkdown(summary), written: files.map((f) => f.slice(dir.length + 1)) };
}
