/** `train`: one distillation run (src/distill/train.ts) from the command line. */
import { ATTRIBUTIONS, type AttributionKind, trainDistillation, type DistillSpec, validateSpec } from "../distill/train.ts";
import { parsePlacement } from "../distill/placement.ts";
import { parseSelection, type Selection } from "../distill/selection.ts";
import { UserError } from "../errors.ts";
import { acquireGpu } from "../gpu/device.ts";
import { type Command, intFlag, numberFlag, parseFlags, requiredFlag, saveDtypeFlag } from "./command.ts";

const HELP = `usage: bun src/cli.ts train --dataset D --placement none|before|after --selection full|shuffled|random|key|masked
         [--k K] [--p P] [--alpha A] --model <hf-dir | hub-id | scratch-SIZE> --epochs E --seed S --out runs/<name>
         [--limit N] [--batch-size B] [--lr LR] [--warmup-steps N] [--weight-decay W] [--grad-clip C]
         [--max-tokens T] [--rationales TEACHER|palm|FILE.jsonl] [--rationale-filter agree|any]
         [--samples first|all|majority] [--rationale-template V] [--rationale-part explanation|reasoning|both]
         [--attribution idf|saliency] [--attribution-model DIR]
         [--name NAME] [--db PATH] [--checkpoint-every N] [--resume] [--chat-template] [--save-dtype f32|bf16|f16] [--json]

Trains a student on the dataset's training split (dev items held out) with teacher rationales placed and selected
as asked, into the run folder: run.json (every setting), metrics.jsonl, checkpoints/, model/ (Hugging Face folder
with the tokenizer). The run is registered in the runs table of --db. Progress goes to stderr.
  --placement     none (label only), before (rationale, then "So the answer is (x)."), after (label, then rationale)
  --selection     full, shuffled, random (as many random tokens), key (top --k by attribution), masked (--p of them)
  --alpha         loss weight of the rationale tokens (default 1; label tokens weigh 1)
  --model         a Hugging Face model folder (gpt2, llama, mistral, qwen2, qwen3, gemma, gemma2, phi) or a hub id in the
                  local HF cache (gpt2, openai-community/gpt2 …: its weights and tokenizer), or a size trained from
                  scratch as a GPT-2 (scratch-micro, scratch-tiny, scratch-small, scratch-gpt2 …) with a compact BPE
                  of the dataset (or, with --attribution saliency, the attribution model's)
  --rationales    a teacher model name: its answers in the rationale store (--db) for the dataset, under its newest
                  template version (or --rationale-template V); palm: the shipped PaLM rationales (default); or a
                  JSON-lines file: what GET /v1/rationales exports, or {"id"|"index", "rationale"[, "label"]} lines
  --rationale-filter  agree (default): only answers whose parsed label equals the gold label; any: every answer
  --rationale-part  which part of a stored answer trains: explanation (default), reasoning (a reasoning model's
                  trace), or both (trace, then explanation)
  --samples       with several samples per item: first (default), all (each kept sample its own example), majority
                  (self-consistency vote over labels, then the first sample with the winning label)
  --attribution   scorer of --selection key: idf (model-free baseline, default) or saliency (gradient x input of the
                  student in --attribution-model, a run folder or model folder; cached in .cache/attribution/)
  --max-tokens    longest training sequence (default: the longest example, within the model's n_positions)
  --resume        continue from the run folder's latest checkpoint
  --chat-template wrap each prompt in the student's chat template (an instruct model's tokenizer_config.json
                  chat_template): a user turn, then the assistant's header; the target ends with its EOS
  --save-dtype    dtype of the final model/ weights (default f32; training is f32 either way)
  --json          print {"run_id", "run_dir", "model_dir", "steps", "final_loss", "examples"} at the end`;

const FLAGS = {
  dataset: { type: "string" },
  placement: { type: "string" },
  selection: { type: "string" },
  k: { type: "string" },
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
  "rationale-filter": { type: "string" },
  samples: { type: "string" },
  "rationale-template": { type: "string" },
  "rationale-part": { type: "string" },
  attribution: { type: "string" },
  "attribution-model": { type: "string" },
  db: { type: "string" },
  "checkpoint-every": { type: "string" },
  adapter: { type: "string" },
  resume: { type: "boolean" },
  "chat-template": { type: "boolean" },
  "save-dtype": { type: "string" },
  json: { type: "boolean" },
} as const;

type Values = ReturnType<typeof parseFlags<typeof FLAGS>>["values"];

const optionalInt = (value: string | undefined, name: string, min: number) => (value === undefined ? undefined : intFlag(value, name, undefined, min));
const optionalNumber = (value: string | undefined, name: string) => (value === undefined ? undefined : numberFlag(value, name));

function selectionOf(values: Values, seed: number): Selection {
  const kind = parseSelection(requiredFlag(values.selection, "selection"));
  if (values.k !== undefined && kind !== "key") throw new UserError(`--k is only for --selection key`);
  if (values.p !== undefined && kind !== "masked") throw new UserError(`--p is only for --selection masked`);
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
    rationaleFilter: values["rationale-filter"] as DistillSpec["rationaleFilter"],
    samples: values.samples as DistillSpec["samples"],
    rationaleTemplate: values["rationale-template"],
    rationalePart: values["rationale-part"] as DistillSpec["rationalePart"],
    attribution: attributionOf(values.attribution),
    attributionModel: values["attribution-model"],
    maxLength: optionalInt(values["max-tokens"], "max-tokens", 1),
    checkpointEvery: optionalInt(values["checkpoint-every"], "checkpoint-every", 0),
    resume: values.resume,
    chatTemplate: values["chat-template"],
    saveDtype: saveDtypeFlag(values["save-dtype"]),
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
