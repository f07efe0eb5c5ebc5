/**
 * `bun src/cli.ts experiment` end to end on the software GPU with a two-cell grid: every cell trained, evaluated and
 * registered once, the results tables and charts written; a second invocation trains nothing (the run count in
 * SQLite and the cells' files stay as they were) and rewrites the same table.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { RunStore } from "../../src/store/runs.ts";

const dir = mkdtempSync(join(tmpdir(), "cot-experiment-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const grid = {
  name: "two-cells",
  dataset: "cqa",
  model: "scratch-micro",
  placements: ["none", "after"],
  seeds: [3],
  epochs: 1,
  limit: 8,
  evalLimit: 4,
  training: { batchSize: 4, maxSeqLength: 80 },
};
const gridFile = join(dir, "grid.json");
writeFileSync(gridFile, JSON.stringify(grid));
const db = join(dir, "runs.sqlite");
const out = join(dir, "runs");

async function experiment(...extra: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = Bun.spawn([process.execPath, "src/cli.ts", "experiment", gridFile, "--out", out, "--db", db, "--quiet", ...extra], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr };
}

const runCount = () => {
  const database = openDatabase(db);
  try {
    return new RunStore(database).list().length;
  } finally {
    database.close();
  }
};

test(
  "a grid runs each cell once and writes its report; running it again reruns nothing",
  async () => {
    const first = await experiment();
    expect(first.stderr).not.toContain("exited with code");
    expect(first.code).toBe(0);
    expect(runCount()).toBe(2);
    const folder = join(out, "two-cells");
    for (const cell of ["none-s3", "after-s3"]) {
      const result = JSON.parse(readFileSync(join(folder, cell, "result.json"), "utf8"));
      expect(result.n).toBe(4);
      expect(result.steps).toBe(2);
    }
    const table = readFileSync(join(folder, "results.md"), "utf8");
    expect(table).toMatch(/\| none \| 1 \|/);
    expect(table).toMatch(/\| after \| 1 \|/);
    // the conditions table as printed (results.md adds chance and the paired comparisons below it)
    expect(first.stdout).toContain(table.split("\nChance")[0].trim());
    expect(first.stdout).toContain("| after vs none | 1 | 4 |");
    expect(readFileSync(join(folder, "results.csv"), "utf8").split("\n")[0]).toContain("mean");
    for (const chart of ["accuracy", "loss"]) {
      expect(readFileSync(join(folder, `${chart}.svg`), "utf8")).toStartWith("<svg");
      expect([...readFileSync(join(folder, `${chart}.png`)).subarray(1, 4)].map((b) => String.fromCharCode(b)).join("")).toBe("PNG");
    }
    const metricsTime = statSync(join(folder, "after-s3", "metrics.jsonl")).mtimeMs;

    const plan = await experiment("--plan");
    expect(plan.stdout).toContain("2 runs, 2 finished");

    const second = await experiment();
    expect(second.code).toBe(0);
    expect(second.stderr.match(/finished earlier/g)).toHaveLength(2);
    expect(second.stderr).not.toContain("training");
    expect(runCount()).toBe(2);
    expect(statSync(join(folder, "after-s3", "metrics.jsonl")).mtimeMs).toBe(metricsTime);
    expect(readFileSync(join(folder, "results.md"), "utf8")).toBe(table);
  },
  240_000,
);

test("a bad grid file is one readable error, exit 1", async () => {
  writeFileSync(gridFile, JSON.stringify({ ...grid, selections: [{ kind: "masked", p: 2 }] }));
  const bad = await experiment();
  expect(bad.code).toBe(1);
  expect(bad.stderr.trim()).toMatch(/^cot-distill: .*grid\.json: selections\.0\.p: p must be in \[0, 1\]$/);
});
