/**
 * An instruct-style student end to end: a Qwen2-family model folder with a tokenizer.json and a ChatML chat
 * template, distilled with --chat-template (prompts as a user turn and the assistant header, targets ending with
 * <|im_end|>), saved in bf16, then evaluated the same way.
 */
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildExample } from "../../src/distill/example.ts";
import { readRunSettings, trainDistillation } from "../../src/distill/train.ts";
import { loadSplit } from "../../src/data/registry.ts";
import { evaluate } from "../../src/eval/evaluate.ts";
import { loadStudent } from "../../src/eval/student.ts";
import { configFromHF } from "../../src/model/config.ts";
import { HFTokenizer } from "../../src/model/hf-tokenizer.ts";
import { loadHFModel, saveHFModel } from "../../src/model/hf.ts";
import { initParams } from "../../src/model/init.ts";
import { paramLayout } from "../../src/model/params.ts";
import { readMetrics } from "../../src/train/metrics.ts";
import { openDatabase } from "../../src/store/db.ts";
import { isolatedCache, sharedGpu, syntheticDataset } from "../eval/synthetic.ts";
import { PROJECT_ROOT } from "../helpers/cli.ts";

const root = mkdtempSync(join(tmpdir(), "cot-chat-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
isolatedCache();
const data = syntheticDataset({ train: 24, test: 8 });
const QWEN_TOKENIZER = join(PROJECT_ROOT, "test/fixtures/tokenizers/qwen-bpe");

test("train --chat-template wraps every prompt in the student's template, and eval decodes it the same way", async () => {
  const student = join(root, "qwen-student");
  const config = configFromHF({
    model_type: "qwen2", hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
    vocab_size: new HFTokenizer(QWEN_TOKENIZER).vocabSize, max_position_embeddings: 512, rms_norm_eps: 1e-6, rope_theta: 1e6, tie_word_embeddings: true,
  });
  await saveHFModel(student, { config, params: initParams(paramLayout(config), 3) });
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(QWEN_TOKENIZER, f), join(student, f));

  const { gpu, kernels } = await sharedGpu();
  const db = openDatabase(":memory:");
  const outDir = join(root, "run");
  const result = await trainDistillation(
    { dataset: data.name, placement: "none", selection: { kind: "full", seed: 0 }, model: student, epochs: 3, batchSize: 8, optimizer: { lr: 1e-2 }, seed: 1, outDir, rationales: data.rationales, chatTemplate: true, saveDtype: "BF16" },
    { db, gpu, kernels, log: () => {} },
  );
  const settings = readRunSettings(outDir)!;
  expect(settings.chatTemplate).toBe(true);
  // the sequences trained on are the templated ones: the longest is what buildExample makes with chat
  const codec = new HFTokenizer(student);
  const items = await loadSplit(data.name, "train", { excludeDev: true });
  const longest = (chat: boolean) => Math.max(...items.map((item) => buildExample(item, null, { placement: "none", selection: { kind: "full", seed: 0 }, chat }, codec).ids.length));
  expect(settings.seqLength).toBe(longest(true) - 1);
  expect(longest(true)).toBeGreaterThan(longest(false) + 10);
  const metrics = readMetrics(join(outDir, "metrics.jsonl"));
  expect(metrics.at(-1)!.loss).toBeLessThan(metrics[0].loss);

  const model = join(outDir, "model");
  expect(existsSync(join(model, "tokenizer.json"))).toBe(true);
  expect(JSON.parse(readFileSync(join(model, "config.json"), "utf8"))).toMatchObject({ model_type: "qwen2", torch_dtype: "bfloat16" });
  expect((await loadHFModel(model)).dtype).toBe("BF16");

  const loaded = await loadStudent(outDir, db);
  expect(loaded.chat).toBe(true);
  const evaluated = await evaluate(outDir, undefined, "test", { db, gpu, kernels, limit: 4, write: false });
  expect(evaluated.n).toBe(4);
  expect(result.runId).toBe(settings.id);
});
