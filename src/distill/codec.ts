/**
 * The little the example builder needs from a tokenizer. src/model/tokenizer.ts provides it (GPT-2 byte-level
 * BPE, or a compact BPE trained on a dataset); anything else with encode/decode can stand in.
 */
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
}

export function specialIdsOf(codec: TokenCodec): Set<number> {
  return new Set([...(codec.specialIds ?? []), ...(codec.eotId === undefined ? [] : [codec.eotId])]);
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
