import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSplit } from "../../src/data/registry.ts";
import { openDatabase } from "../../src/store/db.ts";
import { RationaleStore } from "../../src/store/rationales.ts";
import { importPalmRationales, PALM_MODEL, PALM_TEMPLATE } from "../../src/teacher/palm.ts";

const dir = mkdtempSync(join(tmpdir(), "cot-palm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("importing the shipped PaLM rationales", () => {
  test("CQA train: one rationale per item (9741), idempotent on re-import", async () => {
    const store = new RationaleStore(openDatabase(join(dir, "cqa.sqlite")));
    const report = await importPalmRationales(store, "cqa", "train");
    expect(report).toEqual({ dataset: "cqa", split: "train", items: 9741, inserted: 9741, duplicates: 0, unanswered: 0 });
    expect(store.count({ dataset: "cqa", split: "train", model: PALM_MODEL })).toBe(9741);
    const again = await importPalmRationales(store, "cqa", "train");
    expect(again).toMatchObject({ inserted: 0, duplicates: 9741 });
    expect(store.count()).toBe(9741);

    const items = await loadSplit("cqa", "train");
    const [first] = store.forItem("cqa", items[0].id, PALM_MODEL);
    expect(first).toMatchObject({ template: PALM_TEMPLATE, source: "import", question: items[0].question, costUsd: null });
    expect(first.rationale.length).toBeGreaterThan(20);
    expect(first.rationale).not.toContain("So the answer is");
    // PaLM is a good but imperfect teacher: most, not all, of its answers match the gold label
    const summary = store.summary()[0];
    expect(summary.agreeing / summary.rationales).toBeGreaterThan(0.6);
    expect(summary.agreeing).toBeLessThan(summary.rationales);
    expect(summary.costUsd).toBeNull(); // imported, never paid for here
  });

  test("SVAMP test: items where PaLM gave no answer are counted, not invented", async () => {
    const store = new RationaleStore(openDatabase(join(dir, "svamp.sqlite")));
    const report = await importPalmRationales(store, "svamp", "test");
    expect(report.items).toBe(200);
    expect(report.inserted + report.unanswered).toBe(200);
    expect(report.unanswered).toBeGreaterThan(0);
    for await (const r of store.list({ dataset: "svamp", split: "test" })) {
      if (r.label !== null) expect(Number.isFinite(Number(r.label))).toBe(true);
    }
  });
});
