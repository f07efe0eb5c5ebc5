/**
 * The results table of an experiment: runs grouped by condition (placement × selection × … — every field except
 * the seed), each cell's mean accuracy with a 95% confidence interval from Student's t over its seeds, written
 * as Markdown (for the README), CSV (for spreadsheets) and JSON (for plots and other tools).
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";

export type Condition = Record<string, string | number>;

export interface RunResult {
  condition: Condition;
  seed: number;
  accuracy: number;
}

export interface Cell {
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

// ---- Student's t ----------------------------------------------------------------------------------------------

function logGamma(x: number): number {
  // Lanczos approximation (g = 7, n = 9): ~15 digits for x > 0
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let sum = c[0];
  for (let i = 1; i < 9; i++) sum += c[i] / (x + i);
  const t = x + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(sum);
}

/** Continued fraction of the regularized incomplete beta (Lentz's method, as in Numerical Recipes). */
function betaFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  d = 1 / (Math.abs(d) < tiny ? tiny : d);
  let h = d;
  for (let m = 1; m <= 300; m++) {
    for (const numerator of [
      (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m)),
      (-(a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1)),
    ]) {
      d = 1 + numerator * d;
      d = 1 / (Math.abs(d) < tiny ? tiny : d);
      c = 1 + numerator / c;
      if (Math.abs(c) < tiny) c = tiny;
      h *= d * c;
    }
    if (Math.abs(d * c - 1) < 1e-15) break;
  }
  return h;
}

function regularizedBeta(a: number, b: number, x: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  return x < (a + 1) / (a + b + 2) ? (front * betaFraction(a, b, x)) / a : 1 - (front * betaFraction(b, a, 1 - x)) / b;
}

/** P(T ≤ t) for Student's t with `df` degrees of freedom. */
export function studentTCdf(t: number, df: number): number {
  const tail = 0.5 * regularizedBeta(df / 2, 0.5, df / (df + t * t));
  return t >= 0 ? 1 - tail : tail;
}

/** The t with P(T ≤ t) = p, by bisection (the CDF is monotone; 200 halvings reach double precision). */
export function studentTQuantile(p: number, df: number): number {
  let low = -1e6;
  let high = 1e6;
  for (let i = 0; i < 200; i++) {
    const mid = (low + high) / 2;
    if (studentTCdf(mid, df) < p) low = mid;
    else high = mid;
  }
  return (low + high) / 2;
}

// ---- aggregation ----------------------------------------------------------------------------------------------

export function conditionKey(condition: Condition): string {
  return Object.keys(condition)
    .sort()
    .map((k) => `${k}=${condition[k]}`)
    .join(" ");
}

export function summarizeCell(condition: Condition, runs: RunResult[]): Cell {
  const n = runs.length;
  const values = runs.map((r) => r.accuracy);
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1)) : null;
  const ci95 = sd === null ? null : (studentTQuantile(0.975, n - 1) * sd) / Math.sqrt(n);
  return { condition, key: conditionKey(condition), n, seeds: runs.map((r) => r.seed), mean, sd, ci95 };
}

/** One cell per distinct condition, in order of first appearance. */
export function summarize(results: RunResult[]): Cell[] {
  const groups = new Map<string, RunResult[]>();
  for (const run of results) {
    const key = conditionKey(run.condition);
    groups.set(key, [...(groups.get(key) ?? []), run]);
  }
  return [...groups.values()].map((runs) => summarizeCell(runs[0].condition, runs));
}

// ---- tables ---------------------------------------------------------------------------------------------------

function factorNames(cells: Cell[]): string[] {
  return [...new Set(cells.flatMap((c) => Object.keys(c.condition)))];
}

const percent = (x: number | null) => (x === null ? "" : (100 * x).toFixed(2));

export function toMarkdown(cells: Cell[]): string {
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

export function toCsv(cells: Cell[]): string {
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

/** Writes <base>.md, <base>.csv and <base>.json into `dir`; returns their paths. */
export async function writeResultTables(results: RunResult[], dir: string, base = "results"): Promise<string[]> {
  const cells = summarize(results);
  mkdirSync(dir, { recursive: true });
  const files: Array<[string, string]> = [
    [`${base}.md`, toMarkdown(cells)],
    [`${base}.csv`, toCsv(cells)],
    [`${base}.json`, JSON.stringify({ cells, runs: results }, null, 2) + "\n"],
  ];
  await Promise.all(files.map(([name, text]) => Bun.write(join(dir, name), text)));
  return files.map(([name]) => join(dir, name));
}
