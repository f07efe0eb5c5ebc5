/**
 * Paired comparisons: the difference, its bootstrap CI and the permutation p-value over the same items and seeds,
 * and the seed-level paired t-test — checked against cases whose answers are known.
 */
import { expect, test } from "bun:test";
import { comparePaired, pairedT, signFlipP, type Outcomes } from "../../src/experiment/compare.ts";

/** seed → item → correct, from per-seed strings of 0/1 over items i0, i1, … */
function outcomes(...seeds: string[]): Outcomes {
  return new Map(seeds.map((bits, s) => [s, new Map([...bits].map((b, i) => [`i${i}`, b === "1"]))]));
}

test("identical conditions: difference 0, p = 1, CI [0, 0]", () => {
  const a = outcomes("1100110011", "0101010101");
  const c = comparePaired("a", a, "b", a, { resamples: 500 });
  expect(c.difference).toBe(0);
  expect(c.p).toBe(1);
  expect(c.ci95).toEqual([0, 0]);
  expect(c.wins + c.losses).toBe(0);
});

test("A right on every item B misses: the difference is exact, the CI excludes 0, p is as small as the test allows", () => {
  const a = outcomes("1".repeat(40), "1".repeat(40), "1".repeat(40));
  const b = outcomes("0".repeat(40), "0".repeat(20) + "1".repeat(20), "0".repeat(40));
  const c = comparePaired("a", a, "b", b, { resamples: 2000 });
  expect(c.items).toBe(40);
  expect(c.seeds).toEqual([0, 1, 2]);
  expect(c.difference).toBeCloseTo((40 + 20 + 40) / 120, 12);
  expect(c.ci95[0]).toBeGreaterThan(0.5);
  expect(c.p).toBeLessThan(0.001);
  expect(c.wins).toBe(100);
  expect(c.losses).toBe(0);
  expect(c.seedDifferences).toEqual([1, 0.5, 1]);
});

test("only items and seeds both conditions have are paired", () => {
  const a = outcomes("1111", "1111");
  const b: Outcomes = new Map([[1, new Map([["i0", false], ["i1", true], ["i9", false]])]]);
  const c = comparePaired("a", a, "b", b, { resamples: 200 });
  expect(c.seeds).toEqual([1]);
  expect(c.items).toBe(2);
  expect(c.difference).toBe(0.5);
  expect(c.seedP).toBeNull();
  expect(() => comparePaired("a", a, "x", new Map(), {})).toThrow(/no test items/);
});

test("sign-flip p of a small case matches exact enumeration; the paired t-test matches a hand computation", () => {
  // d = [1, 1, 1, -1]: of the 16 sign patterns, |mean| >= 0.5 for those with sum ±2 or ±4: 2 + 8 = 10 → p = 10/16
  const p = signFlipP([1, 1, 1, -1], 40_000, 7);
  expect(Math.abs(p - 10 / 16)).toBeLessThan(0.01);
  // diffs 1, 2, 3: mean 2, sd 1, t = 2 / (1/√3) = 3.464 with 2 df → two-sided p = 0.0742 (scipy.stats.ttest_1samp)
  const t = pairedT([0.01, 0.02, 0.03])!;
  expect(t.p).toBeCloseTo(0.07418, 4);
  expect(t.ci95[0]).toBeCloseTo(0.02 - 4.302653 * 0.01 / Math.sqrt(3), 5);
  expect(pairedT([0.1, 0.1])).toBeNull();
});

test("the same predictions always give the same CI and p (seeded)", () => {
  const a = outcomes("1011011101", "1101101011");
  const b = outcomes("1001010100", "0101100011");
  expect(comparePaired("a", a, "b", b)).toEqual(comparePaired("a", a, "b", b));
});
