/**
 * `preview`: one training example exactly as the trainer will build it — the prompt the student is given, the
 * target it learns to produce, the gold label and the selected rationale tokens — for checking an experimental
 * condition by eye before spending GPU time on it.
 */
import { palmRationales } from "../data/palm.ts";
import { loadSplit } from "../data/registry.ts";
import { datasetIdfAttribution } from "../distill/attribution.ts";
import { buildExample, type DistillExample } from "../distill/example.ts";
import { parsePlacement } from "../distill/placement.ts";
import { checkFraction, parseSelection, type Selection } from "../distill/selection.ts";
import { loadCodec } from "../distill/tokenizer.ts";
import { UserError } from "../errors.ts";
import { intFlag, numberFlag, parseFlags, requiredFlag, type Command } from "./command.ts";

const HELP = `usage: bun src/cli.ts preview --dataset D --split S --index I --placement none|before|after
         --selection full|shuffled|random|key|masked [--k K] [--p P] [--seed N] [--tokenizer DIR] [--chat-template] [--json]

Shows one distillation example as the trainer sees it.
  --dataset     cqa, svamp, or any registered dataset (rationales: the shipped PaLM ones)
  --split       train, test or dev (dev is carved from train: --dev-size, --dev-seed)
  --index       position in the split
  --placement   none (label only), before (rationale, then "So the answer is (x)."), after (label, then rationale)
  --selection   which rationale tokens: full, shuffled, random, key (top --k by attribution), masked (--p of them)
  --seed        seed of shuffled/random/masked (default 0)
  --tokenizer   a model folder's tokenizer (tokenizer.json, or vocab.json + merges.txt; default: a compact BPE
                trained on the dataset)
  --chat-template  the prompt wrapped in that tokenizer's chat template, as train --chat-template does
  --json        print {"prompt", "target", "label", "rationale_tokens"}`;

const FLAGS = {
  dataset: { type: "string" },
  split: { type: "string" },
  index: { type: "string" },
  placement: { type: "string" },
  selection: { type: "string" },
  k: { type: "string" },
  p: { type: "string" },
  seed: { type: "string" },
  tokenizer: { type: "string" },
  "chat-template": { type: "boolean" },
  "dev-size": { type: "string" },
  "dev-seed": { type: "string" },
  json: { type: "boolean" },
} as const;

function selectionOf(values: Record<string, string | boolean | undefined>): Selection {
  const kind = parseSelection(requiredFlag(values.selection as string | undefined, "selection"));
  const seed = intFlag(values.seed as string | undefined, "seed", 0);
  if (kind === "key") return { kind, seed, k: intFlag(values.k as string | undefined, "k") };
  if (kind === "masked") return { kind, seed, p: checkFraction(numberFlag(values.p as string | undefined, "p")) };
  return { kind, seed };
}

function readable(ex: DistillExample): string {
  return [
    `prompt:\n${ex.prompt}`,
    `target:\n${ex.target}`,
    `label: ${ex.label}   tokens: ${ex.ids.length} (prompt ${ex.promptLength})`,
    `rationale tokens (${ex.rationaleTokens.length}): ${ex.rationaleTokens.map((t) => JSON.stringify(t)).join(" ")}`,
  ].join("\n\n");
}

export const command: Command = {
  summary: "show one training example (prompt, target, label, selected rationale tokens)",
  help: HELP,
  async run(argv) {
    const { values } = parseFlags(argv, FLAGS);
    const dataset = requiredFlag(values.dataset, "dataset");
    const split = requiredFlag(values.split, "split");
    const placement = parsePlacement(requiredFlag(values.placement, "placement"));
    const selection = selectionOf(values);
    const splitOptions = {
      devSize: values["dev-size"] === undefined ? undefined : intFlag(values["dev-size"], "dev-size", undefined, 1),
      devSeed: intFlag(values["dev-seed"], "dev-seed", 0),
    };
    const items = await loadSplit(dataset, split, splitOptions);
    const index = intFlag(values.index, "index");
    if (index >= items.length) {
      throw new UserError(`--index ${index} is out of range: ${dataset}/${split} has ${items.length} items (0..${items.length - 1})`);
    }
    const item = items[index];
    const palm = placement === "none" ? null : (await palmRationales(dataset, split, splitOptions))[index];
    const { codec, key } = await loadCodec(dataset, values.tokenizer);
    const attribution = selection.kind === "key" ? await datasetIdfAttribution(dataset, codec, key) : undefined;
    const example = buildExample(item, palm?.rationale ?? null, { placement, selection, attribution, chat: values["chat-template"] }, codec);
    if (values.json) {
      const { prompt, target, label, rationaleTokens } = example;
      console.log(JSON.stringify({ prompt, target, label, rationale_tokens: rationaleTokens }));
    } else {
      console.log(readable(example));
    }
    return 0;
  },
};
