import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isUserError } from "../../src/errors.ts";
import { expandGrid, parseGrid, readGrid, runGrid, type Cell, type CellRunner } from "../../src/experiment/grid.ts";
import { comparisonPairs } from "../../src/experiment/report.ts";

const root = mkdtempSync(join(tmpdir(), "cot-grid-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const base = { name: "g", dataset: "cqa", model: "scratch-micro", epochs: 1 };

/** Records what it was asked to do; "trains" by writing a marker file, "evaluates" with a made-up accuracy. */
function recordingRunner(failOn?: string) {
  const trained: Array<{ cell: string; resume: boolean }> = [];
  const runner: CellRunner = {
    async train(cell: Cell, resume: boolean) {
      trained.push({ cell: cell.name, resume });
      mkdirSync(cell.runDir, { recursive: true });
      writeFileSync(join(cell.runDir, "metrics.jsonl"), "");
      if (cell.name === failOn) throw new Error("killed");
    },
    async evaluate(cell: Cell) {
      return { accuracy: (cell.seed + 1) / 10, n: 10 };
    },
  };
  return { runner, trained };
}

describe("grid expansion", () => {
  test("placements × selections × seeds, 'none' once, selection restricted to its placements", () => {
    const grid = parseGrid({
      ...base,
      placements: ["none", "before", "after"],
      selections: [{ kind: "full" }, { kind: "shuffled", placements: ["after"] }, { kind: "key", k: 4 }, { kind: "masked", p: 0.25 }],
      seeds: [0, 1],
    });
    const cells = expandGrid(grid, root);
    const conditions = [...new Set(cells.map((c) => c.condition))];
    expect(conditions).toEqual(["none", "before", "before-key-4", "before-masked-0.25", "after", "after-shuffled", "after-key-4", "after-masked-0.25"]);
    expect(cells).toHaveLength(conditions.length * 2);
    expect(new Set(cells.map((c) => c.runDir)).size).toBe(cells.length);
    const keyCell = cells.find((c) => c.name === "after-key-4-s1")!;
    expect(keyCell.selection).toEqual({ kind: "key", k: 4 });
    expect(keyCell.runDir).toBe(join(root, "g", "after-key-4-s1"));
    expect(cells.find((c) => c.condition === "none")!.selection.kind).toBe("full");
  });

  test("several datasets and models prefix the condition; one of each does not", () => {
    const grid = parseGrid({ ...base, dataset: undefined, model: undefined, datasets: ["cqa", "svamp"], models: ["scratch-micro", "models/stories260k"], placements: ["after"] });
    const names = expandGrid(grid, root).map((c) => c.name);
    expect(names).toEqual(["cqa-scratch-micro-after-s0", "cqa-stories260k-after-s0", "svamp-scratch-micro-after-s0", "svamp-stories260k-after-s0"]);
  });

  test("a teacher as the rationale source, with its filter, sample mode, template and part, reaches the train command", async () => {
    const grid = parseGrid({ ...base, placements: ["after"], rationales: "gpt-4o-mini", rationaleFilter: "any", samples: "majority", rationaleTemplate: "cqa-cot@1+abcd1234", rationalePart: "both" });
    const { trainArgs } = await import("../../src/experiment/runner.ts");
    const { cellSpec } = await import("../../src/experiment/grid.ts");
    const { parseRunSpec } = await import("../../src/distill/run-spec.ts");
    // the train command reads them from the cell's spec.json, through the one run-spec schema
    const cell = expandGrid(grid, root)[0];
    const args = trainArgs(cellSpec(cell), cell.runDir);
    const written = parseRunSpec(JSON.parse(readFileSync(args[args.indexOf("--spec") + 1], "utf8")));
    expect([written.rationales, written.rationaleFilter, written.samples, written.rationaleTemplate, written.rationalePart]).toEqual(["gpt-4o-mini", "any", "majority", "cqa-cot@1+abcd1234", "both"]);
    expect(() => parseGrid({ ...base, placements: ["after"], samples: "best" })).toThrow(/samples: samples must be one of: first, all, majority/);
  });

  test("key tokens by a student's saliency are their own condition, and reach the train command's flags", async () => {
    const grid = parseGrid({
      ...base,
      placements: ["after"],
      selections: [{ kind: "key", k: 5 }, { kind: "key", k: 5, attribution: "saliency", attributionModel: "runs/x/after-s0" }],
      rationales: "my-rationales.jsonl",
    });
    const cells = expandGrid(grid, root);
    expect(cells.map((c) => c.condition)).toEqual(["after-key-5", "after-key-5-saliency"]);
    const { trainArgs } = await import("../../src/experiment/runner.ts");
    const { cellSpec } = await import("../../src/experiment/grid.ts");
    const { parseRunSpec } = await import("../../src/distill/run-spec.ts");
    // the train command gets the cell's spec as a file, not as flags
    const args = trainArgs(cellSpec(cells[1]), cells[1].runDir);
    expect(args).toEqual(["train", "--spec", join(cells[1].runDir, "spec.json"), "--out", cells[1].runDir]);
    const written = parseRunSpec(JSON.parse(readFileSync(args[2], "utf8")));
    expect(written.selection).toEqual({ kind: "key", k: 5, attribution: "saliency", attributionModel: "runs/x/after-s0" });
    expect(written.rationales).toBe("my-rationales.jsonl");
    expect(written.training.checkpointEvery).toBe(50);
  });

  test("an untrained row, an alpha sweep, word shuffles and the random-k control have their own conditions", () => {
    const grid = parseGrid({
      ...base,
      placements: ["none", "after"],
      selections: [{ kind: "full" }, { kind: "shuffled", unit: "word" }, { kind: "key", k: 2, attribution: "random" }, { kind: "unk" }],
      alphas: [0.5, 1],
      untrained: true,
      seeds: [0, 1],
    });
    const cells = expandGrid(grid, root);
    expect([...new Set(cells.map((c) => c.condition))]).toEqual([
      "untrained", "none", "after-a0.5", "after-a1", "after-shuffled-word-a0.5", "after-shuffled-word-a1",
      "after-key-2-random-a0.5", "after-key-2-random-a1", "after-unk-a0.5", "after-unk-a1",
    ]);
    expect(cells.filter((c) => c.untrained).map((c) => c.name)).toEqual(["untrained-s0", "untrained-s1"]);
    expect(cells.find((c) => c.name === "after-a0.5-s1")!.training.alpha).toBe(0.5);
    expect(cells.find((c) => c.name === "none-s0")!.training.alpha).toBeUndefined();
  });

  test("shards split the cells without overlap and together cover them", async () => {
    const { shardCells, parseShard } = await import("../../src/commands/experiment.ts");
    const cells = expandGrid(parseGrid({ ...base, placements: ["none", "before", "after"], seeds: [0, 1, 2] }), root);
    const shards = [0, 1, 2, 3].map((i) => shardCells(cells, parseShard(`${i}/4`)).map((c) => c.name));
    expect(shards.flat().sort()).toEqual(cells.map((c) => c.name).sort());
    expect(shards[1]).toEqual([cells[1].name, cells[5].name]);
    expect(() => parseShard("4/4")).toThrow("--shard must be I/N with 0 <= I < N");
    expect(() => parseShard("x")).toThrow("--shard");
  });

  test("defaults: full selection, seed 0, test split", () => {
    const [cell] = expandGrid(parseGrid({ ...base, placements: ["after"] }), root);
    expect(cell).toMatchObject({ name: "after-s0", selection: { kind: "full" }, seed: 0, evalSplit: "test" });
  });

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ["unknown placement", { placements: ["middle"] }, "placements.0"],
    ["unknown selection", { placements: ["after"], selections: [{ kind: "best" }] }, "selections.0.kind"],
    ["key without k", { placements: ["after"], selections: [{ kind: "key" }] }, "selections.0.k"],
    ["p above 1", { placements: ["after"], selections: [{ kind: "masked", p: 1.5 }] }, "selections.0.p"],
    ["p below 0", { placements: ["after"], selections: [{ kind: "masked", p: -0.1 }] }, "selections.0.p"],
    ["unknown field", { placements: ["after"], lr: 3 }, "lr"],
    ["unknown attribution", { placements: ["after"], selections: [{ kind: "key", k: 3, attribution: "gut" }] }, "selections.0.attribution"],
    ["saliency without its model", { placements: ["after"], selections: [{ kind: "key", k: 3, attribution: "saliency" }] }, "selections.0.attributionModel"],
    ["no seeds", { placements: ["after"], seeds: [] }, "seeds"],
  ];
  for (const [what, patch, path] of bad) {
    test(`rejects ${what} with the offending path`, () => {
      let error: unknown;
      try {
        parseGrid({ ...base, ...patch });
      } catch (err) {
        error = err;
      }
      expect(isUserError(error)).toBe(true);
      const details = (error as { details: Array<{ path: string }> }).details;
      expect(details.map((d) => d.path)).toContain(path);
      expect((error as Error).message).toContain(path);
    });
  }

  test("dataset and datasets together are refused", () => {
    expect(() => parseGrid({ ...base, datasets: ["cqa"], placements: ["after"] })).toThrow(/exactly one of "dataset" or "datasets"/);
  });

  test("a missing grid file is one readable error", () => {
    expect(() => readGrid(join(root, "nope.json"))).toThrow(/nope\.json: no such file/);
  });

  test("the shipped example grids are valid", () => {
    const folder = join(import.meta.dir, "../../experiments");
    const files = readdirSync(folder).filter((f) => f.endsWith(".json"));
    expect(files).toContain("paper-cqa.json");
    for (const file of files) {
      const grid = readGrid(join(folder, file));
      const cells = expandGrid(grid, root);
      expect(cells.length).toBeGreaterThan(0);
      // every comparison a shipped grid names is a condition it has (a typo would fail only at report time)
      expect(() => comparisonPairs(grid, cells)).not.toThrow();
    }
    expect(files).toEqual(expect.arrayContaining(["ablations-majority.json", "alpha-majority.json", "paper-cqa-gpt2.json"]));
    const paper = expandGrid(readGrid(join(import.meta.dir, "../../experiments/paper-cqa.json")), root);
    expect([...new Set(paper.map((c) => c.condition))]).toEqual(
      ["none", "before", "after", "after-shuffled", "after-random", expect.stringMatching(/^after-key-\d+$/), expect.stringMatching(/^after-masked-/)],
    );
  });
});

describe("running a grid", () => {
  const grid = parseGrid({ ...base, name: "resume", placements: ["none", "after"], seeds: [0, 1] });

  test("runs every cell once, then a second invocation reruns nothing", async () => {
    const cells = expandGrid(grid, root);
    const first = recordingRunner();
    const results = await runGrid(cells, first.runner);
    expect(first.trained.map((t) => t.cell)).toEqual(["none-s0", "none-s1", "after-s0", "after-s1"]);
    expect(results.map((r) => r.accuracy)).toEqual([0.1, 0.2, 0.1, 0.2]);
    for (const cell of cells) expect(JSON.parse(readFileSync(join(cell.runDir, "result.json"), "utf8")).cell).toBe(cell.name);

    const second = recordingRunner();
    const skipped: string[] = [];
    const again = await runGrid(expandGrid(grid, root), second.runner, (e) => e.kind === "skip" && skipped.push(e.cell.name));
    expect(second.trained).toHaveLength(0);
    expect(skipped).toHaveLength(4);
    expect(again).toEqual(results);
  });

  test("a finished cell is not reused for other settings: the grid stops and says which differ", async () => {
    const changed = parseGrid({ ...base, name: "resume", placements: ["none", "after"], seeds: [0, 1], epochs: 2 });
    const runner = recordingRunner();
    await expect(runGrid(expandGrid(changed, root), runner.runner)).rejects.toThrow(/resume\/none-s0 holds a result for other settings \(epochs differ\)/);
    expect(runner.trained).toHaveLength(0);
  });

  test("an interrupted cell is resumed, finished ones are not touched", async () => {
    const g = parseGrid({ ...base, name: "interrupted", placements: ["after"], seeds: [0, 1, 2] });
    const crashing = recordingRunner("after-s1");
    await expect(runGrid(expandGrid(g, root), crashing.runner)).rejects.toThrow("killed");
    expect(crashing.trained).toEqual([{ cell: "after-s0", resume: false }, { cell: "after-s1", resume: false }]);
    expect(existsSync(join(root, "interrupted", "after-s1", "result.json"))).toBe(false);

    const next = recordingRunner();
    const results = await runGrid(expandGrid(g, root), next.runner);
    expect(next.trained).toEqual([{ cell: "after-s1", resume: true }, { cell: "after-s2", resume: false }]);
    expect(results.map((r) => r.cell)).toEqual(["after-s0", "after-s1", "after-s2"]);
  });
});
