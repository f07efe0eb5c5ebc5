import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expandGrid, parseGrid, type CellResult } from "../../src/experiment/grid.ts";
import { lossSeries, toRunResults, writeGridReport } from "../../src/experiment/report.ts";

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
  const runs = toRunResults(grid, [resultOf("svamp-after-shuffled-s1", 0.5)]);
  expect(runs).toEqual([{ condition: { dataset: "svamp", condition: "after-shuffled" }, seed: 1, accuracy: 0.5 }]);
});

test("the report: one row per condition averaged over seeds, both charts", async () => {
  const results = [resultOf("cqa-none-s0", 0.2), resultOf("cqa-none-s1", 0.4), resultOf("cqa-after-shuffled-s0", 0.5), resultOf("cqa-after-shuffled-s1", 0.7)];
  const report = await writeGridReport(grid, cells, results, root);
  expect(report.written).toEqual(["results.md", "results.csv", "results.json", "accuracy.svg", "accuracy.png", "loss.svg", "loss.png"]);
  const json = JSON.parse(readFileSync(join(root, "r", "results.json"), "utf8")) as { cells: Array<{ condition: Record<string, string>; mean: number; n: number }> };
  expect(json.cells.map((c) => [c.condition.condition, c.n])).toEqual([["none", 2], ["after-shuffled", 2]]);
  expect(json.cells[0].mean).toBeCloseTo(0.3, 12);
  expect(json.cells[1].mean).toBeCloseTo(0.6, 12);
  expect(readFileSync(join(root, "r", "loss.svg"), "utf8")).toContain("cqa-none");
});
