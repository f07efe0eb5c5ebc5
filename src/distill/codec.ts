/**
 * The little the example builder needs from a tokenizer. src/model/hf-tokenizer.ts provides it (a folder's
 * tokenizer.json, any family) and src/model/tokenizer.ts (GPT-2 byte-level BPE, or a compact BPE trained on a
 * dataset); anything else with encode/decode can stand in.
 */
import { UserError } from "../errors.ts";

export interface TokenCodec {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  readonly vocabSize: number;
  /** Ids that never stand for text (end-of-text, padding …): "random" never draws them. */
  readonly specialIds?: readonly number[];
  /** Appended to every target so the student learns to stop. */
  readonly eotId?: number;
  /** What "masked" writes; without one, the token of "_". */
  readonly maskId?: number;
  /** Put before every sequence (Llama's and Gemma's <s>/<bos>; none for GPT-2 and Qwen). */
  readonly bosId?: number;
  /**
   * A sequence's first piece, where it differs from `encode` (which reads a piece as continuing a sequence):
   * SentencePiece's "▁" dummy prefix belongs to the first piece only.
   */
  encodeFirst?(text: string): number[];
  /** The text as a user turn of the model's chat template, ending with the assistant's header (instruct models). */
  chatPrompt?(userText: string): string;
}

/**
 * A sequence's first ids: the prompt, after the family's BOS — or, with `chat`, the prompt rendered by the chat
 * template, which writes its own special tokens. Training and evaluation both start sequences here.
 */
export function promptIds(codec: TokenCodec, prompt: string, chat = false): number[] {
  const first = (text: string) => (codec.encodeFirst ? codec.encodeFirst(text) : codec.encode(text));
  if (chat) {
    if (!codec.chatPrompt) throw new UserError("--chat-template: this tokenizer has no chat template (vocab.json + merges.txt folders have none; an instruct model's tokenizer_config.json does)", 422);
    return first(codec.chatPrompt(prompt));
  }
  return codec.bosId === undefined ? first(prompt) : [codec.bosId, ...first(prompt)];
}

/** A whole text as one sequence (score, language-model training): BOS first when the family has one. */
export function sequenceIds(codec: TokenCodec, text: string): number[] {
  return promptIds(codec, text);
}

export function specialIdsOf(codec: TokenCodec): Set<number> {
  const extra = [codec.eotId, codec.bosId].filter((id) => id !== undefined) as number[];
  return new Set([...(codec.specialIds ?? []), ...extra]);
}

export function maskIdOf(codec: TokenCodec): number {
  if (codec.maskId !== undefined) return codec.maskId;
  const ids = codec.encode("_");
  // a vocabulary without "_" encodes it as its unknown token, which is a special one
  if (ids.length !== 1 || specialIdsOf(codec).has(ids[0])) {
    throw new Error(`the tokenizer has neither a mask token nor a single token for "_"`);
  }
  return ids[0];
}

/** Each token as its own text, for showing a selection (a byte-level token may be part of a character). */
export function tokenStrings(codec: TokenCodec, ids: readonly number[]): string[] {
  return ids.map((id) => codec.decode([id]));
}
