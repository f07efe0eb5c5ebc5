import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { studentTCdf, studentTQuantile, summarize, toCsv, toMarkdown, writeResultTables, type RunAccuracy } from "../../src/experiment/results.ts";

// two-sided 95% critical values t(0.975, df), from a printed t-table
const T_TABLE: Record<number, number> = { 1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 9: 2.262, 10: 2.228, 20: 2.086, 30: 2.042, 120: 1.98 };

describe("Student's t", () => {
  test("the 97.5% quantile matches the t-table", () => {
    for (const [df, t] of Object.entries(T_TABLE)) expect(studentTQuantile(0.975, Number(df))).toBeCloseTo(t, 3);
  });

  test("the CDF is symmetric, 1/2 at 0, and for df = 1 is the Cauchy CDF", () => {
    expect(studentTCdf(0, 7)).toBeCloseTo(0.5, 12);
    expect(studentTCdf(-1.3, 7) + studentTCdf(1.3, 7)).toBeCloseTo(1, 12);
    for (const t of [-3, -0.5, 0.7, 4]) expect(studentTCdf(t, 1)).toBeCloseTo(0.5 + Math.atan(t) / Math.PI, 10);
  });
});

const runs: RunAccuracy[] = [
  // after/shuffled: 0.60, 0.62, 0.64 → mean 0.62, sd 0.02, CI = 4.303 · 0.02 / √3
  ...[0.6, 0.62, 0.64].map((accuracy, seed) => ({ condition: { placement: "after", selection: "shuffled" }, seed, accuracy })),
  // none/full: 0.70 0.72 0.71 0.69 0.73 → mean 0.71, sd √(0.001/4), CI = 2.776 · sd / √5
  ...[0.7, 0.72, 0.71, 0.69, 0.73].map((accuracy, seed) => ({ condition: { selection: "full", placement: "none" }, seed, accuracy })),
  { condition: { placement: "before", selection: "key" }, seed: 0, accuracy: 0.5 },
];

describe("cells", () => {
  const cells = summarize(runs);

  test("group runs by condition whatever the key order, with mean, sd and the t-based 95% CI", () => {
    expect(cells.map((c) => [c.key, c.n])).toEqual([
      ["placement=after selection=shuffled", 3],
      ["placement=none selection=full", 5],
      ["placement=before selection=key", 1],
    ]);
    const [a, b, single] = cells;
    expect(a.mean).toBeCloseTo(0.62, 12);
    expect(a.sd!).toBeCloseTo(0.02, 12);
    expect(a.ci95!).toBeCloseTo((4.303 * 0.02) / Math.sqrt(3), 4);
    expect(b.mean).toBeCloseTo(0.71, 12);
    expect(b.ci95!).toBeCloseTo((2.776 * Math.sqrt(0.001 / 4)) / Math.sqrt(5), 4);
    expect(b.seeds).toEqual([0, 1, 2, 3, 4]);
    expect(single.sd).toBeNull();
    expect(single.ci95).toBeNull();
  });

  test("markdown has a header, a rule and one row per cell", () => {
    const lines = toMarkdown(cells).trim().split("\n");
    expect(lines[0]).toBe("| placement | selection | n | accuracy % (mean ± 95% CI) |");
    expect(lines[1]).toBe("| --- | --- | --- | --- |");
    expect(lines[2]).toBe(`| after | shuffled | 3 | 62.00 ± ${((100 * 4.303 * 0.02) / Math.sqrt(3)).toFixed(2)} |`);
    expect(lines[4]).toBe("| before | key | 1 | 50.00 |");
  });

  test("CSV quotes what needs quoting and leaves a single run's CI empty", () => {
    const csv = toCsv(summarize([{ condition: { note: 'a, "b"' }, seed: 1, accuracy: 0.25 }])).trim().split("\n");
    expect(csv[0]).toBe("note,n,mean,sd,ci95,low,high,seeds");
    expect(csv[1]).toBe('"a, ""b""",1,0.25,,,,,1');
  });

  test("the three files are written and the JSON reads back", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cot-results-"));
    const paths = await writeResultTables(runs, dir, {}, "table");
    expect(paths.map((p) => p.slice(dir.length + 1))).toEqual(["table.md", "table.csv", "table.json"]);
    const json = JSON.parse(readFileSync(join(dir, "table.json"), "utf8"));
    expect(json.cells.length).toBe(3);
    expect(json.runs.length).toBe(runs.length);
    expect(readFileSync(join(dir, "table.csv"), "utf8").trim().split("\n").length).toBe(4);
  });
});
