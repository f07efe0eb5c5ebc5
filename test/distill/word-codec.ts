/**
 * A small but real TokenCodec for builder tests that must not depend on the BPE: GPT-2-style pieces (a word with
 * its leading space, or one punctuation mark), ids assigned in order of first sight, decode = concatenation.
 */
import type { TokenCodec } from "../../src/distill/codec.ts";

export class WordCodec implements TokenCodec {
  private readonly ids = new Map<string, number>();
  private readonly pieces: string[] = ["<|endoftext|>"];
  readonly eotId = 0;

  constructor(corpus: string[] = [], readonly capacity = 5000) {
    for (const text of corpus) this.encode(text);
  }

  get vocabSize(): number {
    return this.capacity;
  }

  encode(text: string): number[] {
    return (text.match(/ ?[A-Za-z0-9]+| ?[^A-Za-z0-9\s]|\s+/g) ?? []).map((piece) => {
      let id = this.ids.get(piece);
      if (id === undefined) {
        id = this.pieces.length;
        this.pieces.push(piece);
        this.ids.set(piece, id);
      }
      return id;
    });
  }

  decode(ids: readonly number[]): string {
    return ids.map((id) => this.pieces[id] ?? `<${id}>`).join("");
  }
}
