/**
 * Real weights: models/stories260k (a trained llama2.c Llama, as GGUF) converted to a Hugging Face Llama folder by
 * scripts/convert-gguf.ts. reference.json holds llama2.c's own ids and float64 losses (reference.py: run.c's
 * encode and forward on the original .bin, equal to HF's Llama on the converted folder to 2e-13 nats).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sequenceIds } from "../../src/distill/codec.ts";
import { buildExample } from "../../src/distill/example.ts";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { createKernels } from "../../src/gpu/kernels/index.ts";
import { DecoderModel } from "../../src/model/decoder.ts";
import { HFTokenizer } from "../../src/model/hf-tokenizer.ts";
import { loadHFModel } from "../../src/model/hf.ts";
import { nextTokenBatch, scoreBatch } from "../../src/model/loss.ts";
import { PROJECT_ROOT, runCli } from "../helpers/cli.ts";

const HERE = join(PROJECT_ROOT, "test/fixtures/stories260k");
const reference = JSON.parse(readFileSync(join(HERE, "reference.json"), "utf8")) as Record<"train" | "heldout", { text: string; ids: number[]; loss_hf: number; loss_unpermuted: number }>;
const temp = mkdtempSync(join(tmpdir(), "cot-stories-"));
const converted = join(temp, "stories260k-hf");
let gpu: Gpu;

beforeAll(async () => {
  const out = Bun.spawnSync([process.execPath, "scripts/convert-gguf.ts", "models/stories260k/stories260K-ctx512.gguf", "--out", converted], { cwd: PROJECT_ROOT, stderr: "pipe" });
  if (out.exitCode !== 0) throw new Error(out.stderr.toString());
  gpu = await acquireGpu();
});
afterAll(() => {
  gpu?.destroy();
  rmSync(temp, { recursive: true, force: true });
});

async function loss(dir: string, text: string): Promise<number> {
  const loaded = await loadHFModel(dir);
  const ids = sequenceIds(new HFTokenizer(dir), text);
  const model = new DecoderModel(gpu, await createKernels(gpu), loaded.config, { B: 1, T: ids.length, training: false });
  try {
    model.setParameters(loaded.params);
    return (await scoreBatch(model, nextTokenBatch(ids))).loss;
  } finally {
    model.destroy();
  }
}

describe("stories260k converted from GGUF", () => {
  test("a tied-head Llama whose tokenizer.json gives llama2.c's own ids (BOS, dummy prefix, merges by score)", async () => {
    const model = await loadHFModel(converted);
    expect(model.config).toMatchObject({ family: "llama", nLayer: 5, nEmbd: 64, nHead: 8, nKVHead: 4, headDim: 8, vocabSize: 512, intermediateSize: 172 });
    expect(model.config.arch.tiedHead).toBe(true);
    const tok = new HFTokenizer(converted);
    for (const { text, ids } of Object.values(reference)) {
      expect(sequenceIds(tok, text)).toEqual(ids);
      expect(tok.decode(ids.slice(1))).toBe(text);
    }
  });

  test("a distillation example encoded piece by piece is the whole text encoded at once (BOS and the ▁ prefix once)", async () => {
    const tok = new HFTokenizer(converted);
    const item = { id: "s1", index: 0, dataset: "t", split: "train", question: "Where did Lily play?", choices: [{ label: "a", text: "the park" }, { label: "b", text: "the sea" }], answer: "a" };
    const example = buildExample(item, "She loved to play outside in the park.", { placement: "after", selection: { kind: "full", seed: 0 }, endOfText: false }, tok);
    // the pieces are "Q: … A:", " (a)", " She loved …"; example.target is decoded, and SentencePiece's decoder drops
    // the first piece's leading space, so the separator is put back here
    expect(example.ids).toEqual(sequenceIds(tok, `${example.prompt} ${example.target}`));
    expect(example.ids[0]).toBe(1);
  });

  test("score on real text equals the float64 reference loss (1e-5 relative); the CLI agrees", async () => {
    for (const { text, loss_hf, loss_unpermuted } of Object.values(reference)) {
      const ours = await loss(converted, text);
      expect(Math.abs(ours - loss_hf) / loss_hf).toBeLessThan(1e-5);
      expect(loss_unpermuted - loss_hf).toBeGreaterThan(2); // what skipping the q/k permutation would have cost
    }
    const cli = runCli(["score", "--model", converted, "--text", reference.train.text, "--json"]);
    expect(cli.code).toBe(0);
    const result = JSON.parse(cli.stdout);
    expect(result.tokens).toBe(reference.train.ids.length - 1);
    expect(Math.abs(result.loss - reference.train.loss_hf) / reference.train.loss_hf).toBeLessThan(1e-5);
  });

  test("train-lm fine-tuning lowers the loss on held-out text; the student is saved in bf16 with its tokenizer", async () => {
    const heldout = readFileSync(join(HERE, "finetune-heldout.txt"), "utf8");
    const before = await loss(converted, heldout);
    const out = join(temp, "finetuned");
    const run = runCli([
      "train-lm", "--model", converted, "--data", join(HERE, "finetune-train.txt"), "--steps", "12", "--batch-size", "4",
      "--seq-len", "64", "--lr", "1e-3", "--out", out, "--save-dtype", "bf16",
    ]);
    expect(run.code).toBe(0);
    const model = join(out, "model");
    const after = await loss(model, heldout);
    // measured: 2.43 → 1.16 nats (the held-out paragraph retells the training stories' characters)
    expect(after).toBeLessThan(before * 0.75);
    expect((await loadHFModel(model)).dtype).toBe("BF16");
    expect(JSON.parse(readFileSync(join(model, "config.json"), "utf8"))).toMatchObject({ model_type: "llama", torch_dtype: "bfloat16", tie_word_embeddings: true });
    expect(sequenceIds(new HFTokenizer(model), heldout)).toEqual(sequenceIds(new HFTokenizer(converted), heldout));
  });
});
