/**
 * Paired comparisons between two conditions of a grid, over the SAME test items and seeds: condition A's student of
 * seed s and condition B's student of seed s answered the same questions, so the question is whether A's per-item
 * correctness exceeds B's, not whether two independent means differ.
 *
 * Two views, both reported, because they answer different questions:
 * - item level (these trained students): d_i = mean over seeds of (correct_A − correct_B) on item i; the CI is a
 *   paired bootstrap over items, the p-value a sign-flip permutation test of mean d (two-sided, exact under the
 *   null that A and B are exchangeable on each item). It says how sure we are about THESE runs' difference.
 * - seed level (training randomness): the per-seed accuracy differences, a paired t-test with seeds − 1 degrees
 *   of freedom. With 3 seeds it is weak, but it is the one that generalizes over retraining.
 * All randomness is seeded: the same predictions always give the same CI and p-value.
 */
import { mixSeed, randomInt, seededRandom } from "../data/random.ts";
import { studentTCdf, studentTQuantile } from "./student-t.ts";

/** One condition's per-item correctness by seed: seed → item id → correct. */
export type Outcomes = Map<number, Map<string, boolean>>;

export interface PairedComparison {
  /** The condition compared ("after") and the one it is compared with ("none"). */
  a: string;
  b: string;
  /** Seeds both conditions have, and items both answered under each of them. */
  seeds: number[];
  items: number;
  /** Mean accuracy of a minus that of b over the paired items and seeds. */
  difference: number;
  /** 95% paired-bootstrap interval of the difference (resampling items). */
  ci95: [number, number];
  /** Two-sided sign-flip permutation p-value of the item-level difference. */
  p: number;
  /** Per-seed accuracy differences and their paired t-test (null with fewer than 2 seeds or no spread). */
  seedDifferences: number[];
  seedCi95: [number, number] | null;
  seedP: number | null;
  /** How many items A got right where B did not, and the reverse (summed over seeds). */
  wins: number;
  losses: number;
}

export interface CompareOptions {
  resamples?: number;
  seed?: number;
}

const mean = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;

/** The item-level differences d_i (averaged over the shared seeds), with the shared seeds. */
function pairedDifferences(a: Outcomes, b: Outcomes): { seeds: number[]; ids: string[]; d: number[]; perSeed: number[]; wins: number; losses: number } {
  const seeds = [...a.keys()].filter((s) => b.has(s)).sort((x, y) => x - y);
  // items answered under every shared seed by both conditions
  const ids = seeds.length ? [...a.get(seeds[0])!.keys()].filter((id) => seeds.every((s) => a.get(s)!.has(id) && b.get(s)!.has(id))) : [];
  let wins = 0;
  let losses = 0;
  const d = ids.map((id) =>
    mean(
      seeds.map((s) => {
        const diff = Number(a.get(s)!.get(id)) - Number(b.get(s)!.get(id));
        if (diff > 0) wins++;
        if (diff < 0) losses++;
        return diff;
      }),
    ),
  );
  const perSeed = seeds.map((s) => mean(ids.map((id) => Number(a.get(s)!.get(id)) - Number(b.get(s)!.get(id)))));
  return { seeds, ids, d, perSeed, wins, losses };
}

/** Percentile of sorted values (linear interpolation). */
function percentile(sorted: readonly number[], q: number): number {
  const at = q * (sorted.length - 1);
  const low = Math.floor(at);
  const high = Math.ceil(at);
  return sorted[low] + (sorted[high] - sorted[low]) * (at - low);
}

export function pairedBootstrapCi(d: readonly number[], resamples: number, seed: number): [number, number] {
  const random = seededRandom(seed);
  const means: number[] = [];
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (let i = 0; i < d.length; i++) sum += d[randomInt(random, d.length)];
    means.push(sum / d.length);
  }
  means.sort((x, y) => x - y);
  return [percentile(means, 0.025), percentile(means, 0.975)];
}

/** Two-sided sign-flip permutation test of mean(d) = 0; (hits + 1) / (resamples + 1) never reports 0. */
export function signFlipP(d: readonly number[], resamples: number, seed: number): number {
  const observed = Math.abs(mean(d));
  if (observed === 0) return 1;
  const random = seededRandom(seed);
  let hits = 0;
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (const x of d) sum += random() < 0.5 ? x : -x;
    // a tolerance so that permutations equal to the observed value count as "as extreme" despite rounding
    if (Math.abs(sum / d.length) >= observed - 1e-12) hits++;
  }
  return (hits + 1) / (resamples + 1);
}

/** Paired t-test over per-seed differences: CI of the mean difference and two-sided p (null without spread). */
export function pairedT(diffs: readonly number[]): { ci95: [number, number]; p: number } | null {
  const n = diffs.length;
  if (n < 2) return null;
  const m = mean(diffs);
  const sd = Math.sqrt(diffs.reduce((s, x) => s + (x - m) ** 2, 0) / (n - 1));
  if (sd === 0) return null;
  const se = sd / Math.sqrt(n);
  const half = studentTQuantile(0.975, n - 1) * se;
  return { ci95: [m - half, m + half], p: 2 * (1 - studentTCdf(Math.abs(m / se), n - 1)) };
}

export function comparePaired(aName: string, a: Outcomes, bName: string, b: Outcomes, options: CompareOptions = {}): PairedComparison {
  const resamples = options.resamples ?? 10_000;
  const { seeds, ids, d, perSeed, wins, losses } = pairedDifferences(a, b);
  if (ids.length === 0) throw new Error(`${aName} vs ${bName}: no test items answered by both under the same seed`);
  const seed = mixSeed(options.seed ?? 0, ids.length, seeds.length);
  const t = pairedT(perSeed);
  return {
    a: aName,
    b: bName,
    seeds,
    items: ids.length,
    difference: mean(d),
    ci95: pairedBootstrapCi(d, resamples, seed),
    p: signFlipP(d, resamples, seed + 1),
    seedDifferences: perSeed,
    seedCi95: t?.ci95 ?? null,
    seedP: t?.p ?? null,
    wins,
    losses,
  };
}

const points = (x: number) => `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)}`;

export function formatP(p: number | null): string {
  if (p === null) return "–";
  return p < 0.001 ? "<0.001" : p.toFixed(3);
}

/** One Markdown table, a row per comparison (differences in accuracy points). */
export function comparisonsMarkdown(comparisons: PairedComparison[]): string {
  const header = ["comparison", "seeds", "items", "difference (points)", "95% CI (items, bootstrap)", "p (permutation)", "seed-level 95% CI", "p (paired t, seeds)"];
  const rows = comparisons.map((c) => [
    `${c.a} vs ${c.b}`,
    String(c.seeds.length),
    String(c.items),
    points(c.difference),
    `[${points(c.ci95[0])}, ${points(c.ci95[1])}]`,
    formatP(c.p),
    c.seedCi95 ? `[${points(c.seedCi95[0])}, ${points(c.seedCi95[1])}]` : "–",
    formatP(c.seedP),
  ]);
  return [header, header.map(() => "---"), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n") + "\n";
}

export function comparisonsCsv(comparisons: PairedComparison[]): string {
  const header = "a,b,seeds,items,difference,ci_low,ci_high,p,seed_ci_low,seed_ci_high,seed_p,wins,losses";
  const rows = comparisons.map((c) =>
    [c.a, c.b, c.seeds.join(" "), c.items, c.difference, c.ci95[0], c.ci95[1], c.p, c.seedCi95?.[0] ?? "", c.seedCi95?.[1] ?? "", c.seedP ?? "", c.wins, c.losses].join(","),
  );
  return [header, ...rows].join("\n") + "\n";
}
