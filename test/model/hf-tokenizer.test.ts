import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promptIds, sequenceIds, specialIdsOf } from "../../src/distill/codec.ts";
import { buildExample } from "../../src/distill/example.ts";
import { HFTokenizer, loadModelTokenizer, saveModelTokenizer } from "../../src/model/hf-tokenizer.ts";
import { Tokenizer as Gpt2Tokenizer } from "../../src/model/tokenizer.ts";
import type { Item } from "../../src/data/types.ts";

const FIXTURES = join(import.meta.dir, "../fixtures");
const LLAMA = join(FIXTURES, "tokenizers/llama-sp");
const QWEN = join(FIXTURES, "tokenizers/qwen-bpe");
const temp = mkdtempSync(join(tmpdir(), "cot-hftok-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

// Ids in the fixtures (make_tokenizers.py): llama-sp has <unk> <s> </s>, bytes <0x00>.. at 3 + byte, then
// ▁ t h e c a s o n = 259..267, then one piece per merge: ▁t 268, he 269, ▁the 270, at 271, ▁c 272, ▁cat 273, on 274.
// qwen-bpe has the 256 byte symbols in GPT-2's order ('!' = 0 … '1' = 16, 'T' = 51, Ġ (space) = 220), then
// Ġt 256, he 257, Ġthe 258, at 259, Ġc 260, Ġcat 261, The 262, and <|endoftext|> 263 <|im_start|> 264 <|im_end|> 265.

describe("Llama-style SentencePiece BPE (tokenizer.json)", () => {
  const tok = new HFTokenizer(LLAMA);

  test("▁ is prepended and replaces spaces; merges apply by rank", () => {
    // "▁the▁cat": ▁+t, h+e, ▁t+he, a+t, ▁+c, ▁c+at
    expect(tok.encodeFirst("the cat")).toEqual([270, 273]);
    // "▁tea": only ▁+t applies
    expect(tok.encodeFirst("tea")).toEqual([268, 262, 264]);
  });

  test("a continuing piece gets no second dummy prefix: ' cat' is ▁cat, '.' is the byte, not ▁ then the byte", () => {
    expect(tok.encode(" cat")).toEqual([273]);
    expect(tok.encodeFirst(" cat")).toEqual([259, 273]);
    // "." is not a piece: byte fallback <0x2E> = 3 + 46
    expect(tok.encode(".")).toEqual([49]);
    expect(tok.encodeFirst(".")).toEqual([259, 49]);
    // "the▁cat" without the prefix: t, h+e, a+t, ▁+c, ▁c+at
    expect(tok.encode("the cat")).toEqual([260, 269, 273]);
    expect([...promptIds(tok, "the"), ...tok.encode(" cat")]).toEqual(sequenceIds(tok, "the cat"));
  });

  test("a character outside the vocabulary falls back to its UTF-8 bytes", () => {
    // é = C3 A9 → <0xC3> = 3 + 195, <0xA9> = 3 + 169
    expect(tok.encodeFirst("the cat sé")).toEqual([270, 273, 259, 265, 198, 172]);
    expect(tok.decode([270, 273, 259, 265, 198, 172])).toBe("the cat sé");
  });

  test("BOS <s> starts every sequence, EOS </s> ends targets; both count as special", () => {
    expect(tok.bosId).toBe(1);
    expect(tok.eotId).toBe(2);
    expect(sequenceIds(tok, "the cat")).toEqual([1, 270, 273]);
    expect([...specialIdsOf(tok)].sort()).toEqual([0, 1, 2]);
    expect(tok.vocabSize).toBe(275);
  });

  test("add_bos_token false in tokenizer_config.json wins over the post-processor", () => {
    const dir = join(temp, "llama-nobos");
    cpSync(LLAMA, dir, { recursive: true });
    const config = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ ...config, add_bos_token: false, eos_token: undefined }));
    writeFileSync(join(dir, "generation_config.json"), JSON.stringify({ bos_token_id: 1, eos_token_id: [2, 0] }));
    const noBos = new HFTokenizer(dir);
    expect(noBos.bosId).toBeUndefined();
    expect(sequenceIds(noBos, "the cat")).toEqual([270, 273]);
    // no eos_token in tokenizer_config.json: generation_config.json's first eos_token_id
    expect(noBos.eotId).toBe(2);
  });

  test("no chat template: --chat-template is one clear error", () => {
    expect(() => promptIds(tok, "Q", true)).toThrow(/has no chat_template/);
  });
});

describe("Qwen-style byte-level BPE (tokenizer.json)", () => {
  const tok = new HFTokenizer(QWEN);

  test("Qwen's pre-tokenizer splits digits one by one (GPT-2's keeps ' 123' whole)", () => {
    // pre-tokens "The", " cat", " ", "1", "2", "3"
    expect(tok.encode("The cat 123")).toEqual([262, 261, 220, 16, 17, 18]);
    expect(tok.decode([262, 261, 220, 16, 17, 18])).toBe("The cat 123");
  });

  test("NFC normalisation, then bytes: é and e + combining acute give the same ids", () => {
    // é = C3 A9 → byte symbols Ã (id 127) and © (id 102)
    expect(tok.encode("é")).toEqual([127, 102]);
    expect(tok.encode("e\u0301")).toEqual([127, 102]);
  });

  test("special tokens written in the text are matched whole; no BOS; EOS and pad from tokenizer_config.json", () => {
    expect(tok.encode("<|im_start|>user")).toEqual([264, 84, 82, 68, 81]);
    expect(tok.bosId).toBeUndefined();
    expect(tok.eotId).toBe(265);
    expect(tok.padId).toBe(263);
    expect(sequenceIds(tok, "The")).toEqual([262]);
  });

  test("chat template: the prompt becomes a ChatML user turn and the assistant header; the target ends with <|im_end|>", () => {
    expect(tok.chatPrompt("Hi")).toBe("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    const item: Item = { id: "q1", index: 0, dataset: "t", split: "train", question: "The cat?", choices: [{ label: "a", text: "at" }], answer: "a" };
    const example = buildExample(item, null, { placement: "none", selection: { kind: "full", seed: 0 }, chat: true }, tok);
    expect(example.ids[0]).toBe(264);
    expect(example.ids.at(-1)).toBe(265);
    expect(example.prompt.startsWith("<|im_start|>system\n")).toBe(true);
    expect(example.prompt.endsWith("<|im_start|>assistant\n")).toBe(true);
    expect(tok.decode(example.ids.slice(0, example.promptLength))).toBe(example.prompt);
    // without the template, the same prompt has no special tokens at all
    const plain = buildExample(item, null, { placement: "none", selection: { kind: "full", seed: 0 } }, tok);
    expect(plain.ids.slice(0, plain.promptLength).some((id) => id >= 263)).toBe(false);
  });
});

describe("model folders", () => {
  test("tokenizer.json is preferred; a GPT-2 folder with only vocab.json + merges.txt keeps its BPE", async () => {
    expect(await loadModelTokenizer(QWEN)).toBeInstanceOf(HFTokenizer);
    const gpt2 = await loadModelTokenizer(join(FIXTURES, "tiny-random-gpt2"));
    expect(gpt2).toBeInstanceOf(Gpt2Tokenizer);
    expect(gpt2.bosId).toBeUndefined();
    expect(loadModelTokenizer(temp)).rejects.toThrow(/no tokenizer/);
  });

  test("a run folder gets the tokenizer's files, and reads back the same ids", async () => {
    const out = join(temp, "saved");
    const files = await saveModelTokenizer(out, new HFTokenizer(LLAMA));
    expect(files.map((f) => f.slice(out.length + 1)).sort()).toEqual(["tokenizer.json", "tokenizer_config.json"]);
    expect(sequenceIds(await loadModelTokenizer(out), "the cat sé")).toEqual([1, 270, 273, 259, 265, 198, 172]);
  });
});
