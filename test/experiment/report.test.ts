import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expandGrid, parseGrid, type CellResult } from "../../src/experiment/grid.ts";
import { lossSeries, toRunAccuracies, writeGridReport } from "../../src/experiment/report.ts";

const root = mkdtempSync(join(tmpdir(), "cot-report-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const grid = parseGrid({ name: "r", datasets: ["cqa", "svamp"], model: "scratch-micro", placements: ["none", "after"], selections: [{ kind: "shuffled" }], seeds: [0, 1], epochs: 1 });
const cells = expandGrid(grid, root);

function fakeMetrics(runDir: string, losses: number[]): void {
  mkdirSync(runDir, { recursive: true });
  writeFileSync(join(runDir, "metrics.jsonl"), losses.map((loss, i) => `${JSON.stringify({ step: i + 1, loss })}\n`).join(""));
}

const resultOf = (name: string, accuracy: number): CellResult => {
  const cell = cells.find((c) => c.name === name)!;
  return { cell: cell.name, condition: cell.condition, dataset: cell.dataset, model: cell.model, placement: cell.placement, selection: cell.selection, seed: cell.seed, accuracy, n: 10 };
};

test("loss curves average the seeds of a condition step by step", () => {
  fakeMetrics(join(root, "r", "cqa-none-s0"), [4, 2]);
  fakeMetrics(join(root, "r", "cqa-none-s1"), [6, 3]);
  const series = lossSeries(cells.filter((c) => c.condition === "cqa-none"));
  expect(series).toEqual([{ name: "cqa-none", points: [{ step: 1, value: 5 }, { step: 2, value: 2.5 }] }]);
  expect(lossSeries(cells.filter((c) => c.condition === "svamp-after-shuffled"))).toEqual([]); // nothing trained yet
});

test("conditions are tabulated by dataset (varied here) and the paper's condition name, not the model (fixed)", () => {
  const runs = toRunAccuracies(grid, [resultOf("svamp-after-shuffled-s1", 0.5)]);
  expect(runs).toEqual([{ condition: { dataset: "svamp", condition: "after-shuffled" }, seed: 1, accuracy: 0.5 }]);
});

test("the report: one row per condition averaged over seeds, both charts", async () => {
  const results = [resultOf("cqa-none-s0", 0.2), resultOf("cqa-none-s1", 0.4), resultOf("cqa-after-shuffled-s0", 0.5), resultOf("cqa-after-shuffled-s1", 0.7)];
  const report = await writeGridReport(grid, cells, results, root);
  expect(report.written).toEqual(["results.md", "results.csv", "results.json", "accuracy.svg", "accuracy.png", "loss.svg", "loss.png"]); // no predictions: no comparisons
  const json = JSON.parse(readFileSync(join(root, "r", "results.json"), "utf8")) as { cells: Array<{ condition: Record<string, string>; mean: number; n: number }> };
  expect(json.cells.map((c) => [c.condition.condition, c.n])).toEqual([["none", 2], ["after-shuffled", 2]]);
  expect(json.cells[0].mean).toBeCloseTo(0.3, 12);
  expect(json.cells[1].mean).toBeCloseTo(0.6, 12);
  expect(readFileSync(join(root, "r", "loss.svg"), "utf8")).toContain("cqa-none");
});

/** Writes a cell's eval-<split>.jsonl: one prediction per item, correct where `bits` has a 1. */
function fakePredictions(runDir: string, bits: string, choices = 5): void {
  mkdirSync(runDir, { recursive: true });
  const scores = Object.fromEntries(Array.from({ length: choices }, (_, i) => [String.fromCharCode(65 + i), -i]));
  writeFileSync(join(runDir, "eval-test.jsonl"), [...bits].map((b, i) => `${JSON.stringify({ id: `q${i}`, correct: b === "1", choiceLogProbs: scores })}\n`).join(""));
}

test("paired comparisons: named ones, or by default each condition vs none and each selection vs its full rationale", async () => {
  const { comparisonPairs, writeGridReport: report } = await import("../../src/experiment/report.ts");
  const g = parseGrid({ name: "p", dataset: "hops", model: "micro", placements: ["none", "after"], selections: [{ kind: "full" }, { kind: "shuffled" }], untrained: true, seeds: [0, 1], epochs: 1 });
  const cs = expandGrid(g, root);
  expect(comparisonPairs(g, cs)).toEqual([["after", "none"], ["after-shuffled", "after"], ["after-shuffled", "none"]]);
  const named = parseGrid({ ...g, datasets: undefined, models: undefined, dataset: "hops", model: "micro", comparisons: [["none", "untrained"]] });
  expect(comparisonPairs(named, cs)).toEqual([["none", "untrained"]]);
  // a report over some finished cells (--report after a partial run) still knows the grid's conditions
  expect(comparisonPairs(named, cs.filter((c) => c.condition === "none"))).toEqual([["none", "untrained"]]);
  const wrong = parseGrid({ ...named, comparisons: [["after", "before"]] });
  expect(() => comparisonPairs(wrong, cs)).toThrow('comparison names condition "before"');

  // after answers 8 more items of 20 than none under both seeds; shuffled is the same as after
  for (const seed of [0, 1]) {
    fakePredictions(join(root, "p", `untrained-s${seed}`), "0".repeat(20));
    fakePredictions(join(root, "p", `none-s${seed}`), "1".repeat(6) + "0".repeat(14));
    fakePredictions(join(root, "p", `after-s${seed}`), "1".repeat(14) + "0".repeat(6));
    fakePredictions(join(root, "p", `after-shuffled-s${seed}`), "1".repeat(14) + "0".repeat(6));
  }
  const results = cs.map((c): CellResult => ({ cell: c.name, condition: c.condition, dataset: c.dataset, model: c.model, placement: c.placement, selection: c.selection, seed: c.seed, accuracy: 0, n: 20, ...(c.untrained ? { untrained: true } : {}) }));
  const out = await report(g, cs, results, root);
  expect(out.chance).toBe(0.2);
  const [afterVsNone, shuffledVsAfter] = out.comparisons;
  expect(afterVsNone).toMatchObject({ a: "after", b: "none", items: 20, seeds: [0, 1], wins: 16, losses: 0 });
  expect(afterVsNone.difference).toBeCloseTo(0.4, 12);
  expect(afterVsNone.p).toBeLessThan(0.01);
  expect(shuffledVsAfter.difference).toBe(0);
  expect(shuffledVsAfter.p).toBe(1);
  expect(out.written).toContain("comparisons.csv");
  expect(out.written).toContain("comparisons.svg");
  const md = readFileSync(join(root, "p", "results.md"), "utf8");
  expect(md).toContain("| after vs none | 2 | 20 | +40.0 |");
  expect(md).toContain("Chance: 20.00%");
  expect(readFileSync(join(root, "p", "accuracy.svg"), "utf8")).toContain('class="chance"');
  const json = JSON.parse(readFileSync(join(root, "p", "results.json"), "utf8"));
  expect(json.comparisons).toHaveLength(3);
  expect(json.cells.map((c: { condition: { condition: string } }) => c.condition.condition)).toEqual(["untrained", "none", "after", "after-shuffled"]);
});
