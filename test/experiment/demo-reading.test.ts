/**
 * The demo's computed reading of its results (src/commands/demo.ts): a difference is claimed only when its item CI
 * excludes zero, a seed-level confirmation is said only when the paired t-test gives p < 0.05, "above chance" needs
 * the seed-level CI to exclude chance, and each of the paper's findings is read off the comparison that tests it
 * (key tokens as a share of the full rationale's gain).
 */
import { expect, test } from "bun:test";
import { interpret, paperFindings } from "../../src/commands/demo.ts";
import type { PairedComparison } from "../../src/experiment/compare.ts";
import type { ConditionSummary } from "../../src/experiment/results.ts";

function comparison(a: string, b: string, difference: number, ci95: [number, number], p: number, seedP: number | null): PairedComparison {
  return { a, b, seeds: [0, 1, 2], items: 100, difference, ci95, p, seedDifferences: [], seedCi95: null, seedP, wins: 0, losses: 0 };
}

function summary(condition: string, mean: number, ci95: number | null): ConditionSummary {
  return { condition: { condition }, key: `condition=${condition}`, n: 3, seeds: [0, 1, 2], mean, sd: null, ci95 };
}

const SUMMARY = [summary("untrained", 0, 0), summary("none", 0.22, 0.05), summary("before", 0.75, 0.3), summary("after", 0.5, 0.03), summary("after-shuffled", 0.2, 0.02), summary("after-key-3", 0.6, 0.1)];
const COMPARISONS = [
  comparison("after", "none", 0.28, [0.22, 0.34], 0.0001, 0.002),
  comparison("after", "before", -0.25, [-0.3, -0.17], 0.0001, 0.08),
  comparison("after-shuffled", "none", -0.02, [-0.06, 0.02], 0.4, 0.5),
  comparison("after-key-3", "none", 0.38, [0.3, 0.45], 0.0001, 0.03),
];

test("each comparison is read as a difference only when its CI excludes zero, and seeds confirm it only at p < 0.05", () => {
  const lines = interpret(COMPARISONS, 0.2, SUMMARY);
  // none (0.22 − 0.05) and after-shuffled (0.20 − 0.02) do not clear chance; the untrained row is not a condition trained
  expect(lines[0]).toBe("Clearly above chance (20.0%; the seed-level 95% CI excludes it): before, after, after-key-3; not: none, after-shuffled.");
  expect(lines[1]).toBe("after beats none by 28.0 points (50.0% vs 22.0%, 95% CI [+22.0, +34.0], p <0.001); it also holds across seeds (paired t).");
  expect(lines[2]).toContain("after trails before by 25.0 points");
  expect(lines[2]).toContain("across 3 seeds the paired t-test cannot confirm it (p 0.080)");
  expect(lines[3]).toBe("after-shuffled vs none: no difference detected (-2.0 points, 95% CI [-6.0, +2.0] includes 0).");
  expect(interpret([], 0.2, [summary("none", 0.2, 0.05)])[0]).toMatch(/^No trained condition is clearly above chance/);
});

test("the paper's findings are read off the comparisons that test them", () => {
  const [first, second, third] = paperFindings(COMPARISONS, SUMMARY);
  expect(first).toBe("(1) rationale after the label beats before it: the opposite here: before (which writes its rationale at test time) is ahead (after − before -25.0 points, p <0.001).");
  expect(second).toBe("(2) a token-shuffled rationale after the label still helps: not detected here (after-shuffled − none -2.0 points, p 0.400).");
  // 0.38 / 0.28 of the full rationale's gain
  expect(third).toBe("(3) a few key tokens give about the full rationale's gain: after-key-3 − none +38.0 points (p <0.001) — 136% of the full rationale's gain (+28.0); after-key-3 at 60.0%, after at 50.0%.");
  // a grid without those comparisons reads nothing into them
  expect(paperFindings([COMPARISONS[0]], SUMMARY)).toEqual([]);
});
