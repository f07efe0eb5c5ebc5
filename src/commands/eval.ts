/** `eval`: accuracy of a trained student on a dataset split (src/eval/). */
import { evaluate } from "../eval/index.ts";
import { parseSampling } from "../eval/sampling.ts";
import { acquireGpu } from "../gpu/device.ts";
import { type Command, intFlag, numberFlag, parseFlags, requiredFlag } from "./command.ts";

const HELP = `usage: bun src/cli.ts eval --run <run id | run folder | model folder> [--dataset D] [--split test] [--limit N]
         [--batch-size B] [--temperature T] [--top-p P] [--seed S] [--db PATH] [--json]

Decodes the student (greedily unless --temperature says otherwise) as it was trained (placement none/after: the label only; before: a rationale, then
the label) and reports label accuracy, plus rank-classification accuracy (the choice whose label is most likely)
for multiple-choice datasets. Per-example predictions go to <run>/eval-<split>.jsonl, the summary to
<run>/eval-<split>.json.
  --run        a run folder, a run id or name from --db, or a bare Hugging Face model folder (decoded as "after")
  --dataset    default: the run's dataset
  --split      test (default), dev or train
  --temperature  0 (default): greedy; > 0: sample from softmax(logits / T)
  --top-p      sample only from the most likely tokens whose probability reaches P (default 1)
  --seed       sampling seed (default 0); each example draws from its own stream
  --json       print the summary {dataset, split, n, accuracy, rankAccuracy, …} as JSON`;

export const command: Command = {
  summary: "evaluate a trained student (label accuracy, rank accuracy, predictions file)",
  help: HELP,
  usesGpu: true,
  async run(argv) {
    const { values } = parseFlags(argv, {
      run: { type: "string" },
      dataset: { type: "string" },
      split: { type: "string" },
      limit: { type: "string" },
      "batch-size": { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
      db: { type: "string" },
      adapter: { type: "string" },
      json: { type: "boolean" },
    });
    const target = requiredFlag(values.run, "run");
    const limit = values.limit === undefined ? undefined : intFlag(values.limit, "limit", undefined, 1);
    const batchSize = intFlag(values["batch-size"], "batch-size", 8, 1);
    const number = (value: string | undefined, name: string) => (value === undefined ? undefined : numberFlag(value, name));
    const sampling = parseSampling({ temperature: number(values.temperature, "temperature"), top_p: number(values["top-p"], "top-p"), seed: number(values.seed, "seed") }, (field) => `--${field.replace("_", "-")}`);
    const gpu = await acquireGpu({ adapter: values.adapter });
    try {
      const log = (line: string) => process.stderr.write(`${line}\n`);
      const { predictions, ...summary } = await evaluate(target, values.dataset, values.split ?? "test", { limit, batchSize, sampling, db: values.db, gpu, log });
      if (values.json) console.log(JSON.stringify(summary));
      else {
        const rank = summary.rankAccuracy === null ? "" : `, rank accuracy ${(100 * summary.rankAccuracy).toFixed(1)}%`;
        console.log(`${summary.dataset}/${summary.split}: accuracy ${(100 * summary.accuracy).toFixed(1)}% of ${summary.n}${rank}; predictions in ${summary.predictionsFile}`);
      }
    } finally {
      gpu.destroy();
    }
    return 0;
  },
};
