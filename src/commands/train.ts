/** `train`: one distillation run (src/distill/train.ts) from the command line. */
import { parseArgsOptions, parseRunSpec, RUN_SPEC_FLAGS, type RunSpec, runSpecFromFlags } from "../distill/run-spec.ts";
import { trainDistillation, validateSpec } from "../distill/train.ts";
import { UserError } from "../errors.ts";
import { acquireGpu } from "../gpu/device.ts";
import { type Command, parseFlags, requiredFlag } from "./command.ts";

const HELP = `usage: bun src/cli.ts train --dataset D --placement none|before|after --selection full|shuffled|random|key|masked|unk
         [--k K] [--p P] [--unit token|word|sentence] [--alpha A] --model <hf-dir | hub-id | scratch-SIZE> --epochs E --seed S
         --out runs/<name> [--limit N] [--batch-size B] [--lr LR] [--warmup-steps N] [--weight-decay W] [--grad-clip C]
         [--max-seq-length T] [--batching bucketed|padded] [--rationales TEACHER|palm|gold|FILE.jsonl] [--rationale-filter agree|any]
         [--samples first|all|majority] [--rationale-template V] [--rationale-part explanation|reasoning|both]
         [--attribution idf|saliency|random] [--attribution-model DIR]
         [--name NAME] [--db PATH] [--spec FILE.json] [--checkpoint-every N] [--dev-every N [--dev-limit N] [--patience N]]
         [--resume] [--untrained] [--chat-template] [--save-dtype f32|bf16|f16]
         [--lora-rank R [--lora-alpha A] [--lora-dropout P] [--lora-targets M1,M2]] [--checkpoint-activations] [--json]

Trains a student on the dataset's training split (dev items held out) with teacher rationales placed and selected
as asked, into the run folder: run.json (every setting), metrics.jsonl, checkpoints/, model/ (Hugging Face folder
with the tokenizer). The run is registered in the runs table of --db. Progress goes to stderr.
  --placement     none (label only), before (rationale, then "So the answer is (x)."), after (label, then rationale)
  --selection     full, shuffled (--unit token, word or sentence), random (as many random tokens), key (top --k
                  by attribution), masked (--p of them replaced by the mask token), unk (all of them replaced)
  --alpha         loss weight of the rationale tokens (default 1; label tokens weigh 1)
  --model         a Hugging Face model folder (gpt2, llama, mistral, qwen2, qwen3, gemma, gemma2, phi) or a hub id in the
                  local HF cache (gpt2, openai-community/gpt2 …: its weights and tokenizer), or a size trained from
                  scratch as a GPT-2 (scratch-micro, the default, scratch-tiny, scratch-small, scratch-gpt2 …) with a
                  compact BPE of the dataset (or, with --attribution saliency, the attribution model's)
  --rationales    a teacher model name: its answers in the rationale store (--db) for the dataset, under its newest
                  template version (or --rationale-template V); palm: the shipped PaLM rationales; gold: the
                  dataset's own worked solutions (generated tasks such as hops; the default where a dataset has
                  them, else palm); or a JSON-lines file: what GET /v1/rationales exports, or
                  {"id"|"index", "rationale"[, "label"]} lines
  --rationale-filter  agree (default): only answers whose parsed label equals the gold label; any: every answer
  --rationale-part  which part of a stored answer trains: explanation (default), reasoning (a reasoning model's
                  trace), or both (trace, then explanation)
  --samples       with several samples per item: first (default), all (each kept sample its own example), majority
                  (self-consistency vote over labels, then the first sample with the winning label)
  --attribution   scorer of --selection key: idf (model-free baseline, default), random (the random-k control) or
                  saliency (gradient x input of the
                  student in --attribution-model, a run folder or model folder; cached in .cache/attribution/)
  --max-seq-length  longest training sequence (default: the longest example, within the model's n_positions)
  --batching      bucketed (default): batches of examples of similar length, each only as long as its longest
                  (padding costs almost nothing); padded: a plain shuffle, every batch as long as the longest example
  --resume        continue from the run folder's latest checkpoint
  --dev-every     evaluate on the dev split (carved out of train, never trained on) every N steps and keep the
                  best weights as model/ (dev.jsonl: each evaluation; best/: the best weights so far)
  --dev-limit     dev items per evaluation (default 200)
  --patience      stop after N dev evaluations in a row without improvement (early stopping)
  --untrained     train no step: save the initial student (the baseline row of "untrained" accuracy)
  --spec          every setting as one JSON file (src/distill/run-spec.ts: what a grid cell and POST /v1/runs
                  hold; the flags above are its fields), instead of the flags
  --chat-template wrap each prompt in the student's chat template (an instruct model's tokenizer_config.json
                  chat_template): a user turn, then the assistant's header; the target ends with its EOS
  --save-dtype    dtype of the final model/ weights (default f32; training is f32 either way)
  --lora-rank     train rank-R LoRA adapters with the base frozen (no base gradients or AdamW state): model/ is
                  the base with them merged (what eval reads), adapter/ the PEFT adapter files
  --lora-alpha    the adapters' update is scaled by alpha/rank (default 8); --lora-dropout on their input (default 0)
  --lora-targets  comma-separated HF module names (default PEFT's for the family: c_attn for gpt2, q_proj,v_proj for
                  llama/mistral/qwen/gemma, q_proj,v_proj,fc1,fc2 for phi)
  --checkpoint-activations  keep only each layer's input and recompute its forward in backward (one layer's
                  activations instead of all; one more forward pass per step)
  --json          print {"run_id", "run_dir", "model_dir", "steps", "final_loss", "examples"} at the end`;

const FLAGS = {
  ...parseArgsOptions(),
  spec: { type: "string" },
  out: { type: "string" },
  db: { type: "string" },
  adapter: { type: "string" },
  resume: { type: "boolean" },
  json: { type: "boolean" },
} as const;

/** The run's settings: a spec file (what grids and the HTTP server hand a child) or the flags, never both. */
export async function specOf(values: Record<string, string | boolean | undefined>): Promise<RunSpec> {
  if (typeof values.spec !== "string") return runSpecFromFlags(values);
  const given = RUN_SPEC_FLAGS.filter((f) => values[f.flag] !== undefined).map((f) => `--${f.flag}`);
  if (given.length) throw new UserError(`--spec holds every setting; do not also give ${given.join(", ")}`);
  let json: unknown;
  try {
    json = await Bun.file(values.spec).json();
  } catch (err) {
    throw new UserError(`--spec ${values.spec}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message}`);
  }
  return parseRunSpec(json, values.spec);
}

export const command: Command = {
  summary: "train a distilled student (placement x selection) into a run folder",
  help: HELP,
  usesGpu: true,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, FLAGS);
    if (positionals.length) throw new UserError(`train takes no arguments (got "${positionals[0]}"); see --help`);
    const spec = await specOf(values);
    const outDir = requiredFlag(values.out, "out");
    validateSpec(spec); // before the GPU starts: bad settings fail fast
    const gpu = await acquireGpu({ adapter: values.adapter });
    try {
      const result = await trainDistillation(spec, { outDir, resume: values.resume, db: values.db, gpu });
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
