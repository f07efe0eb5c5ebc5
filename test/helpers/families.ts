/**
 * Model folders of any family for end-to-end tests: the architecture of a committed fixture
 * (test/fixtures/families/<family>/config.json, awkward shapes included), a vocabulary and context sized for real
 * text, seeded initial weights, saved through the one saver, and tiny-random-gpt2's byte-level BPE (1000 ids), so
 * score --text, train-lm, train and eval can run a Llama, Gemma or Phi on this machine.
 */
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configFromHF } from "../../src/model/family.ts";
import { saveHFModel } from "../../src/model/hf.ts";
import { initParams } from "../../src/model/init.ts";
import { paramLayout } from "../../src/model/params.ts";
import { PROJECT_ROOT } from "./cli.ts";

const FIXTURES = join(PROJECT_ROOT, "test/fixtures");
export const TOKENIZER_VOCAB = 1000;

export async function familyModelFolder(family: "llama" | "qwen2" | "qwen3" | "gemma" | "phi", seed = 1, maxPositions = 128): Promise<string> {
  const hf = JSON.parse(readFileSync(join(FIXTURES, "families", family, "config.json"), "utf8"));
  const config = configFromHF({ ...hf, vocab_size: TOKENIZER_VOCAB, max_position_embeddings: maxPositions });
  const dir = mkdtempSync(join(tmpdir(), `cot-${family}-`));
  await saveHFModel(dir, { config, params: initParams(paramLayout(config), seed) });
  for (const file of ["vocab.json", "merges.txt"]) copyFileSync(join(FIXTURES, "tiny-random-gpt2", file), join(dir, file));
  return dir;
}
