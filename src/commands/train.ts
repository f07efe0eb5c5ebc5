/** `train`: one distillation run (src/distill/train.ts) from the command line. */
import { ATTRIBUTIONS, type AttributionKind, trainDistillation, type DistillSpec, validateSpec } from "../distill/train.ts";
import { parsePlacement } from "../distill/placement.ts";
import { parseSelection, SHUFFLE_UNITS, type Selection, type ShuffleUnit } from "../distill/selection.ts";
import { UserError } from "../errors.ts";
import { acquireGpu } from "../gpu/device.ts";
import { type Command, intFlag, numberFlag, parseFlags, requiredFlag } from "./command.ts";

const HELP = `usage: bun src/cli.ts train --dataset D --placement none|before|after --selection full|shuffled|random|key|masked|unk
         [--k K] [--p P] [--unit token|word|sentence] [--alpha A] --model <hf-dir | preset> --epochs E --seed S --out runs/<name>
         [--limit N] [--batch-size B] [--lr LR] [--warmup-steps N] [--weight-decay W] [--grad-clip C]
         [--max-tokens T] [--rationales palm|FILE.jsonl] [--attribution idf|saliency] [--attribution-model DIR]
         [--name NAME] [--db PATH] [--checkpoint-every N] [--dev-every N [--dev-limit N] [--patience N]]
         [--resume] [--untrained] [--json]

Trains a student on the dataset's training split (dev items held out) with teacher rationales placed and selected
as asked, into the run folder: run.json (every setting), metrics.jsonl, checkpoints/, model/ (Hugging Face folder
with the tokenizer). The run is registered in the runs table of --db. Progress goes to stderr.
  --placement     none (label only), before (rationale, then "So the answer is (x)."), after (label, then rationale)
  --selection     full, shuffled (--unit token, word or sentence), random (as many random tokens), key (top --k
                  by attribution), masked (--p of them replaced by the mask token), unk (all of them replaced)
  --alpha         loss weight of the rationale tokens (default 1; label tokens weigh 1)
  --model         a Hugging Face GPT-2 folder, or a size preset (micro, tiny, small, gpt2 …) trained from scratch
                  with a compact BPE of the dataset (or, with --attribution saliency, the attribution model's)
  --rationales    palm: the shipped PaLM rationales (default); or a JSON-lines file of {"id"|"index", "rationale"}
  --attribution   scorer of --selection key: idf (model-free baseline, default), random (the random-k control) or
                  saliency (gradient x input of the
                  student in --attribution-model, a run folder or model folder; cached in .cache/attribution/)
  --max-tokens    longest training sequence (default: the longest example, within the model's n_positions)
  --resume        continue from the run folder's latest checkpoint
  --dev-every     evaluate on the dev split (carved out of train, never trained on) every N steps and keep the
                  best weights as model/ (dev.jsonl: each evaluation; best/: the best weights so far)
  --dev-limit     dev items per evaluation (default 200)
  --patience      stop after N dev evaluations in a row without improvement (early stopping)
  --untrained     train no step: save the initial student (the baseline row of "untrained" accuracy)
  --json          print {"run_id", "run_dir", "model_dir", "steps", "final_loss", "examples"} at the end`;

const FLAGS = {
  dataset: { type: "string" },
  placement: { type: "string" },
  selection: { type: "string" },
  k: { type: "string" },
  unit: { type: "string" },
  p: { type: "string" },
  alpha: { type: "string" },
  model: { type: "string" },
  epochs: { type: "string" },
  limit: { type: "string" },
  "batch-size": { type: "string" },
  lr: { type: "string" },
  "warmup-steps": { type: "string" },
  "weight-decay": { type: "string" },
  "grad-clip": { type: "string" },
  "max-tokens": { type: "string" },
  seed: { type: "string" },
  out: { type: "string" },
  name: { type: "string" },
  rationales: { type: "string" },
  attribution: { type: "string" },
  "attribution-model": { type: "string" },
  db: { type: "string" },
  "checkpoint-every": { type: "string" },
  "dev-every": { type: "string" },
  "dev-limit": { type: "string" },
  patience: { type: "string" },
  adapter: { type: "string" },
  resume: { type: "boolean" },
  untrained: { type: "boolean" },
  json: { type: "boolean" },
} as const;

type Values = ReturnType<typeof parseFlags<typeof FLAGS>>["values"];

const optionalInt = (value: string | undefined, name: string, min: number) => (value === undefined ? undefined : intFlag(value, name, undefined, min));
const optionalNumber = (value: string | undefined, name: string) => (value === undefined ? undefined : numberFlag(value, name));

function selectionOf(values: Values, seed: number): Selection {
  const kind = parseSelection(requiredFlag(values.selection, "selection"));
  if (values.k !== undefined && kind !== "key") throw new UserError(`--k is only for --selection key`);
  if (values.p !== undefined && kind !== "masked") throw new UserError(`--p is only for --selection masked`);
  if (values.unit !== undefined && kind !== "shuffled") throw new UserError(`--unit is only for --selection shuffled`);
  if (kind === "shuffled" && values.unit !== undefined) {
    if (!(SHUFFLE_UNITS as readonly string[]).includes(values.unit)) throw new UserError(`unknown --unit "${values.unit}" (valid: ${SHUFFLE_UNITS.join(", ")})`);
    return { kind, seed, unit: values.unit as ShuffleUnit };
  }
  if (kind === "key") return { kind, seed, k: intFlag(values.k, "k", undefined, 1) };
  if (kind === "masked") return { kind, seed, p: numberFlag(values.p, "p") };
  return { kind, seed };
}

function attributionOf(value: string | undefined): AttributionKind | undefined {
  if (value !== undefined && !(ATTRIBUTIONS as readonly string[]).includes(value)) {
    throw new UserError(`unknown attribution "${value}" (valid: ${ATTRIBUTIONS.join(", ")})`);
  }
  return value as AttributionKind | undefined;
}

export function specFromFlags(values: Values): DistillSpec {
  const seed = intFlag(values.seed, "seed");
  const optimizer = Object.fromEntries(
    Object.entries({
      lr: optionalNumber(values.lr, "lr"),
      warmupSteps: optionalInt(values["warmup-steps"], "warmup-steps", 0),
      weightDecay: optionalNumber(values["weight-decay"], "weight-decay"),
      gradClip: optionalNumber(values["grad-clip"], "grad-clip"),
    }).filter(([, v]) => v !== undefined),
  );
  return {
    dataset: requiredFlag(values.dataset, "dataset"),
    placement: parsePlacement(requiredFlag(values.placement, "placement")),
    selection: selectionOf(values, seed),
    alpha: optionalNumber(values.alpha, "alpha"),
    model: requiredFlag(values.model, "model"),
    epochs: numberFlag(values.epochs, "epochs"),
    limit: optionalInt(values.limit, "limit", 1),
    batchSize: optionalInt(values["batch-size"], "batch-size", 1),
    optimizer,
    seed,
    outDir: requiredFlag(values.out, "out"),
    name: values.name,
    rationales: values.rationales,
    attribution: attributionOf(values.attribution),
    attributionModel: values["attribution-model"],
    maxLength: optionalInt(values["max-tokens"], "max-tokens", 1),
    checkpointEvery: optionalInt(values["checkpoint-every"], "checkpoint-every", 0),
    devEvery: optionalInt(values["dev-every"], "dev-every", 1),
    devLimit: optionalInt(values["dev-limit"], "dev-limit", 1),
    patience: optionalInt(values.patience, "patience", 1),
    untrained: values.untrained,
    resume: values.resume,
  };
}

export const command: Command = {
  summary: "train a distilled student (placement x selection) into a run folder",
  help: HELP,
  usesGpu: true,
  async run(argv) {
    const { values } = parseFlags(argv, FLAGS);
    const spec = specFromFlags(values);
    validateSpec(spec); // before the GPU starts: bad flags fail fast
    const gpu = await acquireGpu({ adapter: values.adapter });
    try {
      const result = await trainDistillation(spec, { db: values.db, gpu });
      if (values.json) {
        const { runId, runDir, modelDir, steps, finalLoss, examples } = result;
        console.log(JSON.stringify({ run_id: runId, run_dir: runDir, model_dir: modelDir, steps, final_loss: finalLoss, examples }));
      } else {
        console.log(`run ${result.runId} done: ${result.steps} steps, final loss ${result.finalLoss.toFixed(4)}; model in ${result.modelDir}`);
      }
    } finally {
      gpu.destroy();
    }
    return 0;
  },
};
