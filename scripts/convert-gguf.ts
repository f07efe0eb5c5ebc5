/**
 * Converts a llama.cpp GGUF Llama (F32/F16) into a Hugging Face Llama folder (src/model/convert-gguf.ts says how:
 * q/k rows permuted from interleaved rotary pairs to HF's rotate-half, the SentencePiece vocabulary as tokenizer.json).
 *
 *   bun scripts/convert-gguf.ts models/stories260k/stories260K-ctx512.gguf --out models/stories260k-hf
 */
import { parseArgs } from "node:util";
import { ggufLlamaToHF, writeConvertedFolder } from "../src/model/convert-gguf.ts";
import { readGgufFile } from "../src/model/gguf.ts";

const { values, positionals } = parseArgs({ args: Bun.argv.slice(2), options: { out: { type: "string" } }, allowPositionals: true });
if (positionals.length !== 1 || !values.out) {
  console.error("usage: bun scripts/convert-gguf.ts <model.gguf> --out <hf-folder>");
  process.exit(2);
}
try {
  const folder = ggufLlamaToHF(await readGgufFile(positionals[0]));
  await writeConvertedFolder(values.out, folder);
  const c = folder.config;
  console.error(`wrote ${values.out}: llama, ${c.num_hidden_layers} layers × ${c.hidden_size}, ${c.num_attention_heads} heads (${c.num_key_value_heads} kv), vocab ${c.vocab_size}, ${c.tie_word_embeddings ? "tied" : "untied"} head`);
} catch (err) {
  console.error(`convert-gguf: ${(err as Error).message}`);
  process.exit(1);
}
