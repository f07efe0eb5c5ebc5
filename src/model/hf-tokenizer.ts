/**
 * A model folder's tokenizer, whatever the family: `tokenizer.json` (Llama's SentencePiece BPE with byte fallback,
 * Qwen's and Llama 3's byte-level BPE, Gemma's, Phi's …) through @huggingface/tokenizers — HF's own JS port of the
 * `tokenizers` pipeline (normalizer → pre-tokenizer → model → post-processor → decoder), so ids are what
 * `AutoTokenizer` gives — or, in a folder without one, GPT-2's vocab.json + merges.txt (src/model/tokenizer.ts).
 *
 * Special tokens as each family expects them:
 * - BOS: what the tokenizer's post-processor puts before a text (Llama's and Gemma's TemplateProcessing "<s> $A";
 *   nothing for GPT-2 and Qwen). `add_bos_token` in tokenizer_config.json, when given, decides instead, as
 *   transformers' Llama and Gemma tokenizers do.
 * - EOS (what a target ends with, where generation stops): tokenizer_config.json `eos_token`, else
 *   generation_config.json / config.json `eos_token_id` (the first, when a list).
 * - Continuations. A sequence is encoded a piece at a time (prompt, then label, rationale …, so spans stay exact).
 *   SentencePiece tokenizers (Llama 2, TinyLlama, Mistral) put a "▁" dummy prefix before a text — right for the
 *   first piece, wrong for the rest: " (A)" would become "▁▁(A)" and "." "▁.". So `encode` reads a piece as a
 *   continuation (the tokenizer with its prefix step — a Prepend normalizer, a Metaspace or ByteLevel prefix —
 *   turned off) and `encodeFirst`, which promptIds uses for a sequence's first piece, as HF reads a whole text.
 * - Chat template (tokenizer_config.json `chat_template`, rendered by @huggingface/jinja with HF's variables:
 *   messages, add_generation_prompt, bos_token, eos_token): for instruct students, the prompt becomes a user turn
 *   followed by the assistant's header. The rendered text carries its own special tokens, so no BOS is added to it
 *   (transformers' apply_chat_template encodes with add_special_tokens=False too).
 */
import { Tokenizer as HFTokenizerModel } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { UserError } from "../errors.ts";
import { loadTokenizer as loadGpt2Tokenizer, MERGES_FILE, saveTokenizer as saveGpt2Tokenizer, Tokenizer as Gpt2Tokenizer, VOCAB_FILE } from "./tokenizer.ts";

export const TOKENIZER_FILE = "tokenizer.json";
export const TOKENIZER_CONFIG_FILE = "tokenizer_config.json";
/** Files that travel with a model folder's tokenizer (copied into run folders and saved models). */
const COMPANION_FILES = [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, "special_tokens_map.json", "generation_config.json"];

type TokenName = string | { content?: string } | null | undefined;

const tokenContent = (t: TokenName): string | undefined => (typeof t === "string" ? t : (t?.content ?? undefined));

function readJson(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new UserError(`${path}: invalid JSON (${(err as Error).message})`, 422);
  }
}

/** tokenizer.json through @huggingface/tokenizers, with the family's BOS/EOS and optional chat template. */
export class HFTokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eotId?: number;
  readonly padId?: number;
  readonly maskId?: number = undefined;
  readonly specialIds: readonly number[];
  readonly chatTemplate?: string;
  /** The files it was read from (tokenizer.json, tokenizer_config.json …), to copy beside a trained model. */
  readonly files: string[];
  private readonly tokenizer: HFTokenizerModel;
  /** The same tokenizer without a dummy-prefix step (the original when it has none). */
  private readonly continuation: HFTokenizerModel;
  private readonly bosToken?: string;
  private readonly eosToken?: string;

  constructor(readonly dir: string) {
    const jsonPath = join(dir, TOKENIZER_FILE);
    const json = readJson(jsonPath);
    if (!json) throw new UserError(`${dir}: no ${TOKENIZER_FILE}`, 404);
    const config = readJson(join(dir, TOKENIZER_CONFIG_FILE)) ?? {};
    try {
      this.tokenizer = new HFTokenizerModel(json, config);
    } catch (err) {
      throw new UserError(`${jsonPath}: not a tokenizer this library reads (${(err as Error).message})`, 422);
    }
    // a second tokenizer only when there is a prefix step to leave out (large vocabularies take a while to build)
    const continuation = withoutPrefix(json);
    const same = (key: string) => JSON.stringify(continuation[key] ?? null) === JSON.stringify(json[key] ?? null);
    this.continuation = same("normalizer") && same("pre_tokenizer") ? this.tokenizer : new HFTokenizerModel(continuation, config);
    this.files = COMPANION_FILES.map((f) => join(dir, f)).filter(existsSync);
    const idOf = (t: TokenName) => {
      const content = tokenContent(t);
      return content === undefined ? undefined : this.tokenizer.token_to_id(content);
    };
    const added = (json.added_tokens ?? []) as { id: number; special?: boolean }[];
    const modelVocab = ((json.model as { vocab?: unknown })?.vocab ?? {}) as Record<string, number> | [string, number][];
    const ids = [...(Array.isArray(modelVocab) ? modelVocab.map((_, i) => i) : Object.values(modelVocab)), ...added.map((t) => t.id)];
    this.vocabSize = Math.max(-1, ...ids) + 1;
    this.specialIds = added.filter((t) => t.special).map((t) => t.id);

    // BOS: what the post-processor adds in front of a text, unless tokenizer_config.json says otherwise
    const withSpecials = this.tokenizer.encode("a", { add_special_tokens: true }).ids;
    const plain = this.tokenizer.encode("a", { add_special_tokens: false }).ids;
    const prefix = withSpecials.slice(0, withSpecials.length - plain.length);
    this.bosToken = tokenContent(config.bos_token as TokenName);
    const configBos = idOf(config.bos_token as TokenName);
    if (config.add_bos_token === true && configBos !== undefined) this.bosId = configBos;
    else if (config.add_bos_token !== false && prefix.length === 1 && withSpecials.length === plain.length + 1) this.bosId = prefix[0];

    const generation = readJson(join(dir, "generation_config.json")) ?? readJson(join(dir, "config.json")) ?? {};
    const firstId = (v: unknown) => (Array.isArray(v) ? v[0] : v) as number | undefined;
    this.eosToken = tokenContent(config.eos_token as TokenName);
    this.eotId = idOf(config.eos_token as TokenName) ?? firstId(generation.eos_token_id);
    if (this.eosToken === undefined && this.eotId !== undefined) this.eosToken = this.tokenizer.id_to_token(this.eotId);
    this.padId = idOf(config.pad_token as TokenName);
    const template = config.chat_template;
    // some folders ship several named templates ([{name, template}]): the "default" one is the chat template
    if (typeof template === "string") this.chatTemplate = template;
    else if (Array.isArray(template)) this.chatTemplate = (template as { name: string; template: string }[]).find((t) => t.name === "default")?.template;
  }

  /** The ids of a piece that continues a sequence (no dummy prefix, no special tokens added). */
  encode(text: string): number[] {
    if (text === "") return [];
    return this.continuation.encode(text, { add_special_tokens: false }).ids;
  }

  /** The ids of a sequence's first piece, as HF encodes a whole text (dummy prefix included; no special tokens). */
  encodeFirst(text: string): number[] {
    if (text === "") return [];
    return this.tokenizer.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return "";
    for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new UserError(`token id ${id} is outside the vocabulary (${this.vocabSize})`);
    return this.tokenizer.decode([...ids], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /** The prompt as a user turn of the chat template, followed by the assistant's header (add_generation_prompt). */
  chatPrompt(userText: string): string {
    if (!this.chatTemplate) throw new UserError(`${this.dir}: ${TOKENIZER_CONFIG_FILE} has no chat_template (--chat-template needs an instruct model's)`, 422);
    return new Template(this.chatTemplate).render({
      messages: [{ role: "user", content: userText }],
      add_generation_prompt: true,
      bos_token: this.bosToken ?? "",
      eos_token: this.eosToken ?? "",
    });
  }
}

type JsonObject = Record<string, unknown>;

/** A tokenizer.json with its dummy-prefix steps turned off: Prepend normalizers, Metaspace / ByteLevel prefixes. */
function withoutPrefix(json: JsonObject): JsonObject {
  const isPrepend = (n: unknown) => (n as JsonObject | null)?.type === "Prepend";
  let normalizer = json.normalizer as JsonObject | null;
  if (isPrepend(normalizer)) normalizer = null;
  else if (normalizer?.type === "Sequence") normalizer = { ...normalizer, normalizers: (normalizer.normalizers as unknown[]).filter((n) => !isPrepend(n)) };
  const noPrefix = (p: JsonObject): JsonObject => {
    if (p.type === "Metaspace") return { ...p, prepend_scheme: "never", add_prefix_space: false };
    if (p.type === "ByteLevel") return { ...p, add_prefix_space: false };
    if (p.type === "Sequence") return { ...p, pretokenizers: (p.pretokenizers as JsonObject[]).map(noPrefix) };
    return p;
  };
  const preTokenizer = json.pre_tokenizer ? noPrefix(json.pre_tokenizer as JsonObject) : null;
  return { ...json, normalizer, pre_tokenizer: preTokenizer };
}

export type ModelTokenizer = HFTokenizer | Gpt2Tokenizer;

/** The folder's tokenizer: tokenizer.json when there is one, else vocab.json + merges.txt. */
export async function loadModelTokenizer(dir: string): Promise<ModelTokenizer> {
  if (existsSync(join(dir, TOKENIZER_FILE))) return new HFTokenizer(dir);
  if (existsSync(join(dir, VOCAB_FILE))) return loadGpt2Tokenizer(dir);
  throw new UserError(`${dir}: no tokenizer (${TOKENIZER_FILE}, or GPT-2's ${VOCAB_FILE} + ${MERGES_FILE})`, 404);
}

/** The files a tokenizer was read from, to copy beside a trained model. */
export function tokenizerFiles(dir: string, tokenizer: ModelTokenizer): string[] {
  return tokenizer instanceof HFTokenizer ? tokenizer.files : [VOCAB_FILE, MERGES_FILE].map((f) => join(dir, f));
}

/** Writes the tokenizer into `dir` (its files copied, or vocab.json + merges.txt written); returns the paths. */
export async function saveModelTokenizer(dir: string, tokenizer: ModelTokenizer): Promise<string[]> {
  if (!(tokenizer instanceof HFTokenizer)) return saveGpt2Tokenizer(dir, tokenizer);
  mkdirSync(dir, { recursive: true });
  return tokenizer.files.map((file) => {
    const to = join(dir, basename(file));
    copyFileSync(file, to);
    return to;
  });
}
