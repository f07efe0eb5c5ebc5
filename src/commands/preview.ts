/**
 * `preview`: one training example exactly as the trainer will build it — the prompt the student is given, the
 * target it learns to produce, the gold label and the selected rationale tokens — for checking an experimental
 * condition by eye before spending GPU time on it.
 */
import { loadSplit } from "../data/registry.ts";
import { datasetIdfAttribution } from "../distill/attribution.ts";
import { buildExample, type DistillExample } from "../distill/example.ts";
import { parsePlacement } from "../distill/placement.ts";
import { checkFraction, parseSelection, type Selection } from "../distill/selection.ts";
import { chooseAnswers, defaultRationaleSource, openRationaleSource, RATIONALE_FILTERS, RATIONALE_PARTS, type RationalePart, type RationaleFilter, SAMPLE_MODES, type SampleMode, type TeacherAnswer } from "../distill/rationales.ts";
import { loadCodec } from "../distill/tokenizer.ts";
import { resolveModel } from "../model/ref.ts";
import { UserError } from "../errors.ts";
import { intFlag, numberFlag, parseFlags, requiredFlag, type Command } from "./command.ts";

const HELP = `usage: bun src/cli.ts preview --dataset D --split S --index I --placement none|before|after
         --selection full|shuffled|random|key|masked [--k K] [--p P] [--seed N] [--model M | --tokenizer DIR]
         [--rationales TEACHER|palm|gold|FILE.jsonl] [--db PATH] [--rationale-filter agree|any]
         [--samples first|all|majority] [--rationale-template V] [--rationale-part P] [--chat-template] [--json]

Shows one distillation example as the trainer sees it, and which stored answer its rationale is.
  --dataset     cqa, svamp, or any registered dataset
  --split       train, test or dev (dev is carved from train: --dev-size, --dev-seed)
  --index       position in the split
  --placement   none (label only), before (rationale, then "So the answer is (x)."), after (label, then rationale)
  --selection   which rationale tokens: full, shuffled, random, key (top --k by attribution), masked (--p of them)
  --seed        seed of shuffled/random/masked (default 0)
  --model       the student: a HF folder or hub id in the local HF cache (its tokenizer), or scratch-SIZE (default:
                the compact BPE trained on the dataset, as from-scratch students use)
  --tokenizer   a model folder's tokenizer (tokenizer.json, or vocab.json + merges.txt)
  --chat-template  the prompt wrapped in that tokenizer's chat template, as train --chat-template does
  --rationales  as for train: a teacher in the rationale store (--db), palm, gold (the default where the dataset has
                its own, else palm), or a JSON-lines file; the answer is chosen with --rationale-filter (default agree) and --samples (default first)
  --json        print {"prompt", "target", "label", "rationale_tokens", "rationale_source"}`;

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
  model: { type: "string" },
  rationales: { type: "string" },
  db: { type: "string" },
  "rationale-filter": { type: "string" },
  samples: { type: "string" },
  "rationale-template": { type: "string" },
  "rationale-part": { type: "string" },
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

/** The tokenizer folder of a --model: a pretrained model's own; none (the compact BPE) for a from-scratch size. */
function modelTokenizerDir(model: string): string | undefined {
  const ref = resolveModel(model);
  return ref.kind === "pretrained" ? ref.dir : undefined;
}

function picked<T extends string>(value: string | undefined, valid: readonly T[], flag: string, fallback: T): T {
  if (value === undefined) return fallback;
  if (!(valid as readonly string[]).includes(value)) throw new UserError(`unknown --${flag} "${value}" (valid: ${valid.join(", ")})`);
  return value as T;
}

/** Which answer the example's rationale is, as preview reports it. */
interface UsedAnswer {
  source: string;
  name: string;
  teacher: string | null;
  template: string | null;
  sample: number | null;
  key: string | null;
  label: string | null;
  agrees: boolean | null;
  /** Samples of this item that become training examples (more than one with --samples all). */
  examples: number;
}

function usedAnswer(kind: string, name: string, answer: TeacherAnswer | null, examples: number): UsedAnswer {
  return {
    source: kind,
    name,
    teacher: answer?.teacher ?? null,
    template: answer?.template ?? null,
    sample: answer?.sampleIndex ?? null,
    key: answer?.key ?? null,
    label: answer?.label ?? null,
    agrees: answer?.agrees ?? null,
    examples,
  };
}

function readable(ex: DistillExample, used: UsedAnswer): string {
  const from = used.sample === null
    ? "rationale: none (placement none)"
    : `rationale from ${used.source} ${used.name}: teacher ${used.teacher ?? "?"}, template ${used.template ?? "?"}, sample ${used.sample}` +
      `${used.key ? `, key ${used.key.slice(0, 12)}` : ""}; teacher's label ${used.label ?? "none"} (${used.agrees === null ? "agreement unknown" : used.agrees ? "agrees with gold" : "disagrees with gold"})` +
      `${used.examples > 1 ? `; 1 of ${used.examples} training examples of this item` : ""}`;
  return [
    from,
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
    const filter = picked<RationaleFilter>(values["rationale-filter"], RATIONALE_FILTERS, "rationale-filter", "agree");
    const samples = picked<SampleMode>(values.samples, SAMPLE_MODES, "samples", "first");
    // what train defaults to: the dataset's own rationales where it ships them (hops), else PaLM's
    const name = values.rationales ?? defaultRationaleSource(items);
    let used = usedAnswer(name === "palm" || name === "gold" ? name : "none", name, null, 0);
    let chosen: TeacherAnswer | null = null;
    if (placement !== "none") {
      const part = picked<RationalePart>(values["rationale-part"], RATIONALE_PARTS, "rationale-part", "explanation");
      const source = await openRationaleSource(name, { dataset, split, splitOptions, db: values.db, template: values["rationale-template"], part });
      const [answers] = await source.answers([item]);
      const choice = chooseAnswers(answers, filter, samples);
      if ("dropped" in choice) {
        const said = answers.map((a) => `sample ${a.sampleIndex}: ${a.label ?? "no label"}`).join(", ");
        throw new UserError(
          `${dataset}/${split} item ${index} (${item.id}) has no training rationale from ${source.name}: ${choice.dropped.replaceAll("_", " ")}` +
            `${said ? ` (gold ${item.answer}; ${said}); --rationale-filter any keeps it` : ""}`,
          422,
        );
      }
      chosen = choice.answers[0];
      used = usedAnswer(source.kind, source.name, chosen, choice.answers.length);
    }
    const tokenizerDir = values.model !== undefined ? modelTokenizerDir(values.model) : values.tokenizer;
    const { codec, key } = await loadCodec(dataset, tokenizerDir);
    const attribution = selection.kind === "key" ? await datasetIdfAttribution(dataset, codec, key) : undefined;
    const example = buildExample(item, chosen?.rationale ?? null, { placement, selection, attribution, chat: values["chat-template"] }, codec);
    if (values.json) {
      const { prompt, target, label, rationaleTokens } = example;
      console.log(JSON.stringify({ prompt, target, label, rationale_tokens: rationaleTokens, rationale_source: used }));
    } else {
      console.log(readable(example, used));
    }
    return 0;
  },
};
