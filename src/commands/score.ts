import { UserError } from "../errors.ts";
import { acquireGpu } from "../gpu/device.ts";
import { createKernels } from "../gpu/kernels/index.ts";
import { DecoderModel } from "../model/decoder.ts";
import { loadPretrained } from "../model/hf.ts";
import { resolveModel } from "../model/ref.ts";
import { nextTokenBatch, scoreBatch } from "../model/loss.ts";
import { loadModelTokenizer } from "../model/hf-tokenizer.ts";
import { sequenceIds } from "../distill/codec.ts";
import { type Command, parseFlags, requiredFlag } from "./command.ts";

export const command: Command = {
  summary: "mean next-token cross-entropy of a text or token ids under a model",
  help: `usage: bun src/cli.ts score --model <hf-dir | hub id> (--text "<text>" | --ids 1,2,3) [--json] [--adapter NAME]

Runs the model forward on the GPU and prints the mean next-token cross-entropy in nats over the predicted
positions (a sequence of n tokens has n-1).
  --model    a Hugging Face model folder (config.json + model.safetensors; gpt2, llama, mistral, qwen2, qwen3,
             gemma, gemma2 or phi), or a repo id in the local HF cache
  --text     text to score, tokenized with the folder's tokenizer.json (or vocab.json + merges.txt), with the
             family's BOS first as its tokenizer adds it
  --ids      comma-separated token ids
  --json     print {"loss": <nats>, "tokens": <predicted positions>}
  --adapter  pick the WebGPU adapter whose name contains NAME`,
  usesGpu: true,
  async run(argv) {
    const { values } = parseFlags(argv, {
      model: { type: "string" },
      text: { type: "string" },
      ids: { type: "string" },
      json: { type: "boolean" },
      adapter: { type: "string" },
    });
    const modelArg = requiredFlag(values.model, "model");
    if ((values.text === undefined) === (values.ids === undefined)) throw new UserError("give exactly one of --text or --ids");
    const model = resolveModel(modelArg);
    if (model.kind === "scratch") throw new UserError(`score needs trained weights: "${modelArg}" names a from-scratch size`);
    const loaded = await loadPretrained(model.dir);
    const ids = values.ids !== undefined ? parseIds(values.ids) : sequenceIds(await loadModelTokenizer(loaded.dir), values.text!);
    if (ids.length > loaded.config.nPositions) {
      throw new UserError(`input is ${ids.length} tokens, longer than the model's n_positions (${loaded.config.nPositions})`);
    }
    const gpu = await acquireGpu({ adapter: values.adapter });
    try {
      const model = new DecoderModel(gpu, await createKernels(gpu), loaded.config, { B: 1, T: Math.max(ids.length, 2), training: false });
      model.setParameters(loaded.params);
      const result = await scoreBatch(model, nextTokenBatch(ids));
      if (values.json) console.log(JSON.stringify(result));
      else console.log(`loss ${result.loss.toFixed(6)} nats over ${result.tokens} predicted tokens (perplexity ${Math.exp(result.loss).toFixed(3)})`);
      model.destroy();
    } finally {
      gpu.destroy();
    }
    return 0;
  },
};

function parseIds(text: string): number[] {
  const ids = text.split(",").map((s) => s.trim());
  return ids.map((s) => {
    const n = Number(s);
    if (s === "" || !Number.isInteger(n) || n < 0) throw new UserError(`--ids: "${s}" is not a token id`);
    return n;
  });
}
