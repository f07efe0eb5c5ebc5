import { resolve } from "node:path";
import { UserError } from "../errors.ts";
import { expandGrid, gridDir, readCellResult, readGrid, runGrid, type Cell, type CellEvent, type CellResult, type Grid } from "../experiment/grid.ts";
import { writeGridReport } from "../experiment/report.ts";
import { cliCellRunner } from "../experiment/runner.ts";
import { DEFAULT_DB_PATH } from "../store/db.ts";
import { parseFlags, type Command } from "./command.ts";

export const command: Command = {
  summary: "run an experiment grid (conditions × seeds), resumable; writes results tables and plots",
  help: `usage: bun src/cli.ts experiment <grid.json> [--out runs] [--db PATH] [--plan] [--quiet] [--shard I/N] [--report]

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
   "training": {"batchSize", "lr", "alpha", "warmupSteps", "weightDecay", "gradClip", "maxSeqLength", "checkpointEvery",
                "devEvery", "devLimit", "patience", "batching"} (the train command's flags: src/distill/run-spec.ts),
   "untrained": true (adds the initial student, evaluated untrained, as a row),
   "comparisons": [["after", "none"], ...] (paired comparisons to report; default: each condition vs none, and
                  each token selection vs the full rationale of its placement)}

Past one machine: cells are independent, so N jobs can share a grid. --shard I/N (I = 0 … N−1) runs every N-th
cell (those whose position modulo N is I) and writes no report; when all shards are done, --report merges every
finished cell's result.json into the grid's results and charts (it trains nothing). Each cell stays resumable.

options:
  --out DIR    root folder of grids (default runs)
  --db PATH    SQLite database the runs are registered in (default $COT_DISTILL_DB or cot-distill.sqlite)
  --plan       list the cells and which are finished, run nothing
  --quiet      hide the train/eval commands' own progress lines
  --shard I/N  run only the cells whose position modulo N is I (0-based), e.g. I = $SLURM_ARRAY_TASK_ID
  --report     write results tables and charts from the finished cells; run nothing`,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, {
      out: { type: "string", default: "runs" },
      db: { type: "string", default: DEFAULT_DB_PATH },
      plan: { type: "boolean", default: false },
      quiet: { type: "boolean", default: false },
      shard: { type: "string" },
      report: { type: "boolean", default: false },
    });
    if (positionals.length !== 1) throw new UserError("give exactly one grid file (e.g. experiments/tiny.json)");
    if (values.shard !== undefined && values.report) throw new UserError("--shard runs cells and --report merges them: give one of them");
    const grid = readGrid(positionals[0]);
    const cells = expandGrid(grid, values.out);
    const shard = values.shard === undefined ? null : parseShard(values.shard);
    const mine = shard ? shardCells(cells, shard) : cells;
    if (values.plan) {
      printPlan(grid, mine);
      return 0;
    }
    if (values.report) {
      const finished = cells.flatMap((cell) => readCellResult(cell) ?? []);
      if (finished.length === 0) throw new UserError(`no finished cells of grid ${grid.name} in ${resolve(gridDir(grid, values.out))}/`, 404);
      const missing = cells.filter((cell) => !readCellResult(cell)).map((cell) => cell.name);
      if (missing.length) process.stderr.write(`report covers ${finished.length} of ${cells.length} cells; not finished: ${missing.join(", ")}\n`);
      await printReport(grid, cells, finished, values.out);
      return 0;
    }
    const results = await runGrid(mine, cliCellRunner({ db: values.db, quiet: values.quiet }), printCellEvent());
    if (shard) {
      console.log(`shard ${shard.index}/${shard.count}: ${results.length} cells finished; merge all shards with --report`);
      return 0;
    }
    await printReport(grid, cells, results, values.out);
    return 0;
  },
};

async function printReport(grid: Grid, cells: Cell[], results: CellResult[], root: string): Promise<void> {
  const done = new Set(results.map((r) => r.cell));
  const files = await writeGridReport(grid, cells.filter((c) => done.has(c.name)), results, root);
  console.log(`\n${files.markdownTable}\n`);
  if (files.comparisonsTable) console.log(`paired comparisons (same test items and seeds):\n\n${files.comparisonsTable}`);
  console.log(`results and plots in ${resolve(gridDir(grid, root))}/: ${files.written.join(", ")}`);
}

export interface Shard {
  index: number;
  count: number;
}

/** "I/N" with 0 <= I < N. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) throw new UserError(`--shard must be I/N with 0 <= I < N (e.g. 0/4), got "${text}"`);
  return { index, count };
}

/** Every N-th cell starting at I: shards of one grid never share a cell, and together they cover it. */
export function shardCells<T>(cells: T[], shard: Shard): T[] {
  return cells.filter((_, i) => i % shard.count === shard.index);
}

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
