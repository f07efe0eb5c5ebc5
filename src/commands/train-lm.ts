import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { acquireGpu, describeGpu } from "../gpu/device.ts";
import { presetConfig } from "../model/config.ts";
import { loadPretrained } from "../model/hf.ts";
import { resolveModel, SCRATCH_MODELS } from "../model/ref.ts";
import { initParams } from "../model/init.ts";
import { paramLayout } from "../model/params.ts";
import { loadTokenizer, saveTokenizer, trainTokenizer } from "../model/tokenizer.ts";
import { loadModelTokenizer, tokenizerFiles as modelTokenizerFiles, type ModelTokenizer } from "../model/hf-tokenizer.ts";
import { sequenceIds } from "../distill/codec.ts";
import { TokenStreamSource } from "../train/batches.ts";
import { runTraining } from "../train/run.ts";
import { DEFAULT_OPTIMIZER } from "../train/trainer.ts";
import { loraSettingsOf, trainingMemoryFromFlags, trainingMemoryOptions } from "../distill/run-spec.ts";
import { initLora, loraLayout, loraParameterCount } from "../model/lora.ts";
import { type Command, intFlag, numberFlag, parseFlags, requiredFlag, saveDtypeFlag } from "./command.ts";

export const command: Command = {
  summary: "plain language-model training or fine-tuning on a text file",
  help: `usage: bun src/cli.ts train-lm --model <hf-dir | hub id | preset> --data <file> --steps N --out <dir> [options]

Trains a decoder on next-token prediction over a text file, on the GPU (or the software adapter).
  --model          a Hugging Face model folder of any supported family, or a hub id in the local cache
                   (fine-tuning, its tokenizer), or a size trained from scratch: ${SCRATCH_MODELS.join(", ")}
                   (from scratch, a compact byte-level BPE is trained on --data; see --vocab-size)
  --data           UTF-8 text file
  --steps          optimizer steps
  --out            run folder: metrics.jsonl, checkpoints/, model/ (the final HF folder with tokenizer)
  --batch-size B   sequences per micro-batch (default 4)
  --seq-len T      tokens per sequence (default 128, at most the model's n_positions)
  --grad-accum N   micro-batches per step (default 1)
  --lr X           peak learning rate (default 1e-3 from scratch, 1e-4 fine-tuning)
  --warmup N       warm-up steps (default 10% of --steps)
  --weight-decay X (default 0.1)      --grad-clip X (default 1.0; 0 disables)
  --vocab-size N   compact tokenizer size for presets (default 2048)
  --save-dtype D   dtype of the final model/ weights: f32 (default), bf16 or f16 (training is f32 either way)
  --checkpoint-every N   (default: only at the end)
  --resume         continue from the latest checkpoint in --out (the same loss curve as an uninterrupted run)
  --seed N         (default 1)
  --lora-rank R    train rank-R LoRA adapters with the base frozen (no base gradients or AdamW state); model/ is
                   the base with them merged, adapter/ the PEFT adapter (adapter_config.json + adapter_model.safetensors)
  --lora-alpha A   the update is scaled by A/R (default 8)      --lora-dropout P   on the adapter input (default 0)
  --lora-targets M comma-separated HF modules (default PEFT's for the family: c_attn; q_proj,v_proj; phi adds fc1,fc2)
  --checkpoint-activations  keep only each layer's input and recompute its forward in backward (one layer's
                   activations instead of all; one more forward pass per step)
  --adapter NAME   pick the WebGPU adapter whose name contains NAME`,
  usesGpu: true,
  async run(argv) {
    const { values: v } = parseFlags(argv, {
      model: { type: "string" }, data: { type: "string" }, steps: { type: "string" }, out: { type: "string" },
      "batch-size": { type: "string" }, "seq-len": { type: "string" }, "grad-accum": { type: "string" },
      lr: { type: "string" }, warmup: { type: "string" }, "weight-decay": { type: "string" }, "grad-clip": { type: "string" },
      "vocab-size": { type: "string" }, "checkpoint-every": { type: "string" }, resume: { type: "boolean" },
      seed: { type: "string" }, adapter: { type: "string" }, "save-dtype": { type: "string" },
      ...trainingMemoryOptions(),
    });
    const memory = trainingMemoryFromFlags(v);
    const saveDtype = saveDtypeFlag(v["save-dtype"]);
    const modelArg = requiredFlag(v.model, "model");
    const dataPath = requiredFlag(v.data, "data");
    const steps = intFlag(v.steps, "steps", undefined, 1);
    const out = requiredFlag(v.out, "out");
    if (!existsSync(dataPath) || !statSync(dataPath).isFile()) throw new UserError(`--data: no such file ${dataPath}`);
    const text = readFileSync(dataPath, "utf8");
    const B = intFlag(v["batch-size"], "batch-size", 4, 1);
    const seed = intFlag(v.seed, "seed", 1);
    const model = resolveModel(modelArg);

    let tokenizer: ModelTokenizer;
    let tokenizerFiles: string[];
    let config;
    let params: Float32Array;
    if (model.kind === "scratch") {
      const tokenizerDir = join(out, "tokenizer");
      if (v.resume && existsSync(join(tokenizerDir, "vocab.json"))) tokenizer = await loadTokenizer(tokenizerDir);
      else tokenizer = trainTokenizer(text.split(/\n{2,}/), { vocabSize: intFlag(v["vocab-size"], "vocab-size", 2048, 262) });
      tokenizerFiles = await saveTokenizer(tokenizerDir, tokenizer);
      config = presetConfig(model.size, { vocabSize: tokenizer.vocabSize });
      params = initParams(paramLayout(config), seed);
    } else {
      const loaded = await loadPretrained(model.dir);
      tokenizer = await loadModelTokenizer(loaded.dir);
      tokenizerFiles = modelTokenizerFiles(loaded.dir, tokenizer);
      config = loaded.config;
      params = loaded.params;
    }
    const T = intFlag(v["seq-len"], "seq-len", Math.min(128, config.nPositions), 2);
    if (T > config.nPositions) throw new UserError(`--seq-len ${T} is longer than the model's n_positions (${config.nPositions})`);
    const stream = Uint32Array.from(sequenceIds(tokenizer, text));
    if (stream.length < 2) throw new UserError(`--data: ${dataPath} has fewer than 2 tokens`);

    const loraSettings = loraSettingsOf(memory, config);
    const lora = loraSettings ? loraLayout(config, loraSettings) : undefined;
    const gpu = await acquireGpu({ adapter: v.adapter });
    console.error(`train-lm: ${describeGpu(gpu)}; ${config.nLayer} layers × ${config.nEmbd}, vocab ${config.vocabSize}; ${stream.length} tokens of data` +
      (lora ? `; LoRA r=${lora.rank} on ${lora.settings.targets.join(",")} (${loraParameterCount(lora).toLocaleString("en-US")} trainable, base frozen)` : ""));
    const result = await runTraining({
      outDir: out,
      config,
      initialParams: params,
      source: new TokenStreamSource(stream, B, T),
      steps,
      optimizer: {
        ...DEFAULT_OPTIMIZER,
        lr: numberFlag(v.lr, "lr", model.kind === "scratch" ? 1e-3 : 1e-4),
        warmupSteps: intFlag(v.warmup, "warmup", Math.floor(steps / 10)),
        weightDecay: numberFlag(v["weight-decay"], "weight-decay", DEFAULT_OPTIMIZER.weightDecay),
        gradClip: numberFlag(v["grad-clip"], "grad-clip", DEFAULT_OPTIMIZER.gradClip),
        gradAccum: intFlag(v["grad-accum"], "grad-accum", 1, 1),
      },
      seed,
      checkpointEvery: intFlag(v["checkpoint-every"], "checkpoint-every", 0),
      extraFiles: tokenizerFiles,
      saveDtype,
      run: { model: modelArg, data: dataPath, B, T, seed, lora: lora?.settings ?? null },
      lora: lora ? { layout: lora, adapters: initLora(lora, seed), baseModel: model.kind === "pretrained" ? model.dir : undefined } : undefined,
      checkpointing: memory.checkpointActivations,
      resume: v.resume,
      gpu,
      onStep: (m) => {
        if (m.step === 1 || m.step % 10 === 0 || m.step === steps) {
          console.error(`step ${m.step}/${steps}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toExponential(2)}  |g| ${m.grad_norm.toFixed(3)}  ${Math.round(m.tokens_per_s)} tok/s`);
        }
      },
    });
    gpu.destroy();
    console.error(`train-lm: done, ${result.steps} steps${result.resumedFrom !== undefined ? ` (resumed at ${result.resumedFrom})` : ""}; model in ${result.modelDir}`);
    return 0;
  },
};
