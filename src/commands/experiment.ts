import { resolve } from "node:path";
import { UserError } from "../errors.ts";
import { expandGrid, gridDir, readCellResult, readGrid, runGrid, type Cell, type CellEvent, type Grid } from "../experiment/grid.ts";
import { writeGridReport } from "../experiment/report.ts";
import { cliCellRunner } from "../experiment/runner.ts";
import { DEFAULT_DB_PATH } from "../store/db.ts";
import { parseFlags, type Command } from "./command.ts";

export const command: Command = {
  summary: "run an experiment grid (conditions × seeds), resumable; writes results tables and plots",
  help: `usage: bun src/cli.ts experiment <grid.json> [--out runs] [--db PATH] [--plan] [--quiet]

Trains and evaluates every cell of the grid — datasets × models × placement/selection conditions × seeds — one
run each in <out>/<grid name>/<condition>-s<seed>/, then writes results.md, results.csv, results.json (accuracy
mean ± 95% CI per condition over seeds) and accuracy.svg/.png, loss.svg/.png into <out>/<grid name>/.

Run it again to continue: cells with a result.json are not rerun, an interrupted cell resumes from its checkpoint.

grid file (see experiments/*.json):
  {"name", "dataset" | "datasets", "model" | "models" (size preset or model folder), "placements": [none|before|after],
   "selections": [{"kind": "full"|"shuffled"|"random"} | {"kind": "masked", "p"} |
                  {"kind": "key", "k", "attribution": "idf"|"saliency", "attributionModel": run or model folder},
                  optional "placements" to pair a selection with only some placements],
   "seeds", "epochs", "limit" (training items), "rationales" ("palm" or a JSON-lines file), "evalSplit", "evalLimit",
   "training": {"batchSize", "lr", "alpha", "warmupSteps", "weightDecay", "gradClip", "maxTokens", "checkpointEvery"}}

options:
  --out DIR    root folder of grids (default runs)
  --db PATH    SQLite database the runs are registered in (default $COT_DISTILL_DB or cot-distill.sqlite)
  --plan       list the cells and which are finished, run nothing
  --quiet      hide the train/eval commands' own progress lines`,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, {
      out: { type: "string", default: "runs" },
      db: { type: "string", default: DEFAULT_DB_PATH },
      plan: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
    });
    if (positionals.length !== 1) throw new UserError("give exactly one grid file (e.g. experiments/tiny.json)");
    const grid = readGrid(positionals[0]);
    const cells = expandGrid(grid, values.out);
    if (values.plan) {
      printPlan(grid, cells);
      return 0;
    }
    const results = await runGrid(cells, cliCellRunner({ db: values.db, quiet: values.quiet }), printCellEvent());
    const files = await writeGridReport(grid, cells, results, values.out);
    console.log(`\n${files.markdownTable}\n`);
    console.log(`results and plots in ${resolve(gridDir(grid, values.out))}/: ${files.written.join(", ")}`);
    return 0;
  },
};

function printPlan(grid: Grid, cells: Cell[]): void {
  const done = cells.filter((c) => readCellResult(c)).length;
  console.log(`grid ${grid.name}: ${cells.length} runs, ${done} finished`);
  for (const cell of cells) console.log(`  ${readCellResult(cell) ? "done " : "     "} ${cell.name}  (${cell.runDir})`);
}

const minutes = (ms: number) => (ms < 60_000 ? `${(ms / 1000).toFixed(0)} s` : `${(ms / 60_000).toFixed(1)} min`);

/** One line per cell on stderr (the result table goes to stdout). */
export function printCellEvent(write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): (e: CellEvent) => void {
  let started = 0;
  return (e) => {
    const position = `[${e.index + 1}/${e.total}] ${e.cell.name}`;
    if (e.kind === "skip") write(`${position}: finished earlier, accuracy ${e.result.accuracy.toFixed(3)}`);
    if (e.kind === "start") {
      started = Date.now();
      write(`${position}: ${e.resume ? "resuming" : "training"} (${e.cell.placement}, ${e.cell.selection.kind})`);
    }
    if (e.kind === "done") {
      write(`${position}: accuracy ${e.result.accuracy.toFixed(3)} on ${e.result.n} ${e.cell.evalSplit} items, ${minutes(Date.now() - started)}`);
    }
  };
}
