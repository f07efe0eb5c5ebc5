/**
 * The results table of an experiment: runs grouped by condition (placement × selection × … — every field except
 * the seed), each cell's mean accuracy with a 95% confidence interval from Student's t over its seeds, written
 * as Markdown (for the README), CSV (for spreadsheets) and JSON (for plots and other tools).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { studentTQuantile } from "./student-t.ts";
import { comparisonsCsv, comparisonsMarkdown, type PairedComparison } from "./compare.ts";

export { studentTCdf, studentTQuantile } from "./student-t.ts";

export type Condition = Record<string, string | number>;

export interface RunAccuracy {
  condition: Condition;
  seed: number;
  accuracy: number;
}

export interface ConditionSummary {
  condition: Condition;
  /** "placement=after selection=shuffled", stable across runs. */
  key: string;
  n: number;
  seeds: number[];
  mean: number;
  /** Sample standard deviation (n − 1); null with one run. */
  sd: number | null;
  /** Half-width of the 95% confidence interval of the mean; null with one run. */
  ci95: number | null;
}

// ---- aggregation ----------------------------------------------------------------------------------------------

export function conditionKey(condition: Condition): string {
  return Object.keys(condition)
    .sort()
    .map((k) => `${k}=${condition[k]}`)
    .join(" ");
}

export function summarizeCondition(condition: Condition, runs: RunAccuracy[]): ConditionSummary {
  const n = runs.length;
  const values = runs.map((r) => r.accuracy);
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1)) : null;
  const ci95 = sd === null ? null : (studentTQuantile(0.975, n - 1) * sd) / Math.sqrt(n);
  return { condition, key: conditionKey(condition), n, seeds: runs.map((r) => r.seed), mean, sd, ci95 };
}

/** One cell per distinct condition, in order of first appearance. */
export function summarize(results: RunAccuracy[]): ConditionSummary[] {
  const groups = new Map<string, RunAccuracy[]>();
  for (const run of results) {
    const key = conditionKey(run.condition);
    groups.set(key, [...(groups.get(key) ?? []), run]);
  }
  return [...groups.values()].map((runs) => summarizeCondition(runs[0].condition, runs));
}

// ---- tables ---------------------------------------------------------------------------------------------------

function factorNames(cells: ConditionSummary[]): string[] {
  return [...new Set(cells.flatMap((c) => Object.keys(c.condition)))];
}

const percent = (x: number | null) => (x === null ? "" : (100 * x).toFixed(2));

export function toMarkdown(cells: ConditionSummary[]): string {
  const factors = factorNames(cells);
  const header = [...factors, "n", "accuracy % (mean ± 95% CI)"];
  const rows = cells.map((c) => [
    ...factors.map((f) => String(c.condition[f] ?? "")),
    String(c.n),
    c.ci95 === null ? `${percent(c.mean)}` : `${percent(c.mean)} ± ${percent(c.ci95)}`,
  ]);
  return [header, header.map(() => "---"), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n") + "\n";
}

function csvField(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

export function toCsv(cells: ConditionSummary[]): string {
  const factors = factorNames(cells);
  const header = [...factors, "n", "mean", "sd", "ci95", "low", "high", "seeds"];
  const rows = cells.map((c) => [
    ...factors.map((f) => String(c.condition[f] ?? "")),
    String(c.n),
    String(c.mean),
    c.sd === null ? "" : String(c.sd),
    c.ci95 === null ? "" : String(c.ci95),
    c.ci95 === null ? "" : String(c.mean - c.ci95),
    c.ci95 === null ? "" : String(c.mean + c.ci95),
    c.seeds.join(" "),
  ]);
  return [header, ...rows].map((r) => r.map(csvField).join(",")).join("\n") + "\n";
}

export interface ResultExtras {
  /** Paired comparisons between conditions (./compare.ts): a second table in <base>.md, comparisons.csv. */
  comparisons?: PairedComparison[];
  /** Chance accuracy (1 / choices), shown with the table. */
  chance?: number | null;
}

/** Writes <base>.md, <base>.csv and <base>.json (and comparisons.csv) into `dir`; returns their paths. */
export async function writeResultTables(results: RunAccuracy[], dir: string, extras: ResultExtras = {}, base = "results"): Promise<string[]> {
  const cells = summarize(results);
  const comparisons = extras.comparisons ?? [];
  mkdirSync(dir, { recursive: true });
  const chanceLine = typeof extras.chance === "number" ? `\nChance: ${percent(extras.chance)}% (1 / number of choices).\n` : "";
  const comparisonsText = comparisons.length
    ? `\n## Paired comparisons (same test items and seeds; difference in accuracy points)\n\n${comparisonsMarkdown(comparisons)}`
    : "";
  const files: Array<[string, string]> = [
    [`${base}.md`, toMarkdown(cells) + chanceLine + comparisonsText],
    [`${base}.csv`, toCsv(cells)],
    [`${base}.json`, JSON.stringify({ cells, runs: results, chance: extras.chance ?? null, comparisons }, null, 2) + "\n"],
  ];
  if (comparisons.length) files.push(["comparisons.csv", comparisonsCsv(comparisons)]);
  await Promise.all(files.map(([name, text]) => Bun.write(join(dir, name), text)));
  return files.map(([name]) => join(dir, name));
}
