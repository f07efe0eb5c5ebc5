/**
 * GPT-2's byte-level BPE tokenizer, read from a model folder's vocab.json + merges.txt, and a trainer for compact
 * vocabularies of the same kind.
 *
 * Encoding, as in OpenAI's encoder.py: the text is cut into pre-tokens by GPT-2's regex (contractions, letter runs,
 * digit runs, punctuation runs, whitespace — each word keeps its leading space); each pre-token's UTF-8 bytes are
 * mapped to printable characters (bytes_to_unicode), and adjacent symbols are merged lowest-rank-first by
 * merges.txt. Special tokens written literally in the text ("<|endoftext|>") are matched whole first. A symbol
 * missing from the vocabulary becomes the unknown token, <|endoftext|>, as HF's GPT2Tokenizer does (the tiny test
 * vocabulary does not cover every byte).
 *
 * Compact vocabularies for from-scratch students: the full GPT-2 vocab.json/merges.txt cannot be fetched on this
 * machine, so "GPT-2 BPE restricted to a corpus" is built by *training* a byte-level BPE on the corpus with GPT-2's
 * own pre-tokenizer and byte map: 256 byte symbols, then merges learned greedily by frequency-weighted pair counts
 * (ties broken by the pair's text, so training is deterministic), then the special tokens <|endoftext|>, <|pad|>,
 * <|mask|>. It is saved as vocab.json + merges.txt, so one loader reads both kinds, and `transformers`'
 * GPT2Tokenizer reads them too.
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { UserError } from "../errors.ts";

export const END_OF_TEXT = "<|endoftext|>";
export const PAD = "<|pad|>";
export const MASK = "<|mask|>";
export const SPECIAL_TOKENS = [END_OF_TEXT, PAD, MASK];

/** GPT-2's pre-tokenizer (encoder.py), with \p{…} classes as in the original. */
const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * GPT-2's bytes_to_unicode: every byte gets a printable character — printable Latin-1 bytes map to themselves, the
 * others (control characters, space …) to code points from 256 up, so "Ġ" is a space and "Ċ" a newline.
 */
function bytesToUnicode(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const table: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCodePoint(printable(b) ? b : next++);
  return table;
}

const BYTE_TO_CHAR = bytesToUnicode();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((ch, b) => [ch, b]));

/** GPT-2's own vocabulary order for the 256 single-byte symbols: printable bytes first, then the remapped ones. */
const BYTE_SYMBOLS_IN_GPT2_ORDER = [...BYTE_TO_CHAR].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);

const utf8 = new TextEncoder();

/** Pre-tokens of `text` (GPT-2's regex). */
function pretokenize(text: string): string[] {
  return text.match(PRETOKENIZE) ?? [];
}

/** A pre-token's UTF-8 bytes as byte-map symbols, one per byte. */
function byteSymbols(piece: string): string[] {
  return Array.from(utf8.encode(piece), (b) => BYTE_TO_CHAR[b]);
}

const mergeKey = (a: string, b: string) => `${a} ${b}`;

export class Tokenizer {
  readonly vocabSize: number;
  readonly eotId?: number;
  readonly padId?: number;
  readonly maskId?: number;
  /** GPT-2's tokenizer puts nothing before a text. */
  readonly bosId?: number = undefined;
  readonly specialIds: readonly number[];
  private readonly idToToken: string[];
  private readonly mergeRanks: Map<string, number>;
  private readonly specialPattern?: RegExp;
  private readonly cache = new Map<string, number[]>();

  constructor(
    readonly vocab: ReadonlyMap<string, number>,
    readonly merges: readonly [string, string][],
  ) {
    this.idToToken = [];
    for (const [token, id] of vocab) this.idToToken[id] = token;
    this.vocabSize = this.idToToken.length;
    this.mergeRanks = new Map(merges.map(([a, b], rank) => [mergeKey(a, b), rank]));
    this.eotId = vocab.get(END_OF_TEXT);
    this.padId = vocab.get(PAD);
    this.maskId = vocab.get(MASK);
    const specials = [...vocab.keys()].filter((t) => /^<\|[^|]+\|>$/.test(t));
    this.specialIds = specials.map((t) => vocab.get(t)!);
    if (specials.length > 0) this.specialPattern = new RegExp(`(${specials.map(escapeRegExp).join("|")})`);
  }

  encode(text: string): number[] {
    const ids: number[] = [];
    // split around literal special tokens; the odd parts of the split are the specials themselves
    const parts = this.specialPattern ? text.split(this.specialPattern) : [text];
    parts.forEach((part, i) => {
      if (i % 2 === 1) ids.push(this.vocab.get(part)!);
      else for (const piece of pretokenize(part)) ids.push(...this.encodePiece(piece));
    });
    return ids;
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const token = this.idToToken[id];
      if (token === undefined) throw new UserError(`token id ${id} is outside the vocabulary (${this.vocabSize})`);
      if (this.specialIds.includes(id)) bytes.push(...utf8.encode(token));
      else for (const ch of token) bytes.push(CHAR_TO_BYTE.get(ch) ?? 0x3f);
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  }

  /** BPE on one pre-token: repeatedly merge the adjacent pair with the lowest merge rank. */
  private encodePiece(piece: string): number[] {
    const cached = this.cache.get(piece);
    if (cached) return cached;
    let symbols = byteSymbols(piece);
    while (symbols.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i < symbols.length - 1; i++) {
        const rank = this.mergeRanks.get(mergeKey(symbols[i], symbols[i + 1]));
        if (rank !== undefined && rank < bestRank) [best, bestRank] = [i, rank];
      }
      if (best < 0) break;
      symbols = mergeAll(symbols, symbols[best], symbols[best + 1]);
    }
    const unknown = this.eotId ?? 0;
    const ids = symbols.map((s) => this.vocab.get(s) ?? unknown);
    if (this.cache.size < 100_000) this.cache.set(piece, ids);
    return ids;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A binary heap whose top is the item `before` ranks first. */
class MaxHeap<T> {
  private items: T[] = [];
  constructor(private readonly before: (a: T, b: T) => boolean) {}

  push(item: T): void {
    const items = this.items;
    items.push(item);
    for (let i = items.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!this.before(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    items[0] = last;
    for (let i = 0; ; ) {
      const left = 2 * i + 1;
      const right = left + 1;
      let first = i;
      if (left < items.length && this.before(items[left], items[first])) first = left;
      if (right < items.length && this.before(items[right], items[first])) first = right;
      if (first === i) break;
      [items[i], items[first]] = [items[first], items[i]];
      i = first;
    }
    return top;
  }
}

/** Every non-overlapping left-to-right occurrence of the pair (a, b) in symbols, merged. */
function mergeAll(symbols: string[], a: string, b: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < symbols.length; i++) {
    if (i < symbols.length - 1 && symbols[i] === a && symbols[i + 1] === b) {
      out.push(a + b);
      i++;
    } else out.push(symbols[i]);
  }
  return out;
}

export const VOCAB_FILE = "vocab.json";
export const MERGES_FILE = "merges.txt";

/** Reads vocab.json + merges.txt from a model folder. */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const vocabPath = join(dir, VOCAB_FILE);
  const mergesPath = join(dir, MERGES_FILE);
  for (const path of [vocabPath, mergesPath]) {
    if (!existsSync(path)) throw new UserError(`${dir}: no ${path.slice(dir.length + 1)} (the GPT-2 tokenizer needs vocab.json and merges.txt)`, 404);
  }
  let vocabJson: Record<string, number>;
  try {
    vocabJson = JSON.parse(readFileSync(vocabPath, "utf8"));
  } catch (err) {
    throw new UserError(`${vocabPath}: invalid JSON (${(err as Error).message})`, 422);
  }
  const merges = readFileSync(mergesPath, "utf8")
    .split("\n")
    .filter((line) => line.length > 0 && !line.startsWith("#version"))
    .map((line, i) => {
      const pair = line.split(" ");
      if (pair.length !== 2) throw new UserError(`${mergesPath}: line ${i + 2} is not "left right"`, 422);
      return pair as [string, string];
    });
  return new Tokenizer(new Map(Object.entries(vocabJson)), merges);
}

/** Writes vocab.json + merges.txt (GPT-2's format, which GPT2Tokenizer also reads). */
export async function saveTokenizer(dir: string, tokenizer: Tokenizer): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const vocabPath = join(dir, VOCAB_FILE);
  const mergesPath = join(dir, MERGES_FILE);
  await Bun.write(vocabPath, JSON.stringify(Object.fromEntries(tokenizer.vocab)));
  await Bun.write(mergesPath, ["#version: 0.2", ...tokenizer.merges.map(([a, b]) => `${a} ${b}`)].join("\n") + "\n");
  return [vocabPath, mergesPath];
}

export interface TrainOptions {
  /** Total vocabulary size including the 256 byte symbols and the special tokens (default 2048). */
  vocabSize?: number;
  /** A pair seen fewer times than this is never merged (default 2). */
  minFrequency?: number;
}

/**
 * Learns a byte-level BPE from a corpus (see the file comment). Pair counts are kept up to date incrementally:
 * after a merge only the words that contain the merged pair are recounted.
 */
export function trainTokenizer(texts: Iterable<string>, options: TrainOptions = {}): Tokenizer {
  const vocabSize = options.vocabSize ?? 2048;
  const minFrequency = options.minFrequency ?? 2;
  const mergeBudget = vocabSize - 256 - SPECIAL_TOKENS.length;
  if (mergeBudget < 0) throw new UserError(`tokenizer vocabSize must be at least ${256 + SPECIAL_TOKENS.length}, got ${vocabSize}`);

  // pre-token types with their frequencies
  const frequencies = new Map<string, number>();
  for (const text of texts) for (const word of pretokenize(text)) frequencies.set(word, (frequencies.get(word) ?? 0) + 1);
  const words = [...frequencies.keys()].map(byteSymbols);
  const counts = [...frequencies.values()];

  const pairCounts = new Map<string, number>();
  // every count a pair has had goes on the heap; entries that no longer match pairCounts are skipped when popped
  const candidates = new MaxHeap<{ key: string; count: number }>((a, b) => a.count > b.count || (a.count === b.count && a.key < b.key));
  const wordsWithPair = new Map<string, Set<number>>();
  const touched = new Set<string>();
  const pushTouched = () => {
    for (const key of touched) {
      const count = pairCounts.get(key)!;
      if (count > 0) candidates.push({ key, count });
    }
    touched.clear();
  };
  const countPairs = (w: number, sign: 1 | -1) => {
    const symbols = words[w];
    for (let i = 0; i < symbols.length - 1; i++) {
      const key = mergeKey(symbols[i], symbols[i + 1]);
      const count = (pairCounts.get(key) ?? 0) + sign * counts[w];
      pairCounts.set(key, count);
      touched.add(key);
      if (sign > 0) {
        let set = wordsWithPair.get(key);
        if (!set) wordsWithPair.set(key, (set = new Set()));
        set.add(w);
      }
    }
  };
  for (let w = 0; w < words.length; w++) countPairs(w, 1);
  pushTouched();

  const merges: [string, string][] = [];
  while (merges.length < mergeBudget) {
    let best = candidates.pop();
    while (best && pairCounts.get(best.key) !== best.count) best = candidates.pop();
    if (!best || best.count < minFrequency) break;
    const bestKey = best.key;
    const [a, b] = bestKey.split(" ") as [string, string];
    merges.push([a, b]);
    for (const w of wordsWithPair.get(bestKey) ?? []) {
      countPairs(w, -1);
      words[w] = mergeAll(words[w], a, b);
      countPairs(w, 1);
    }
    pairCounts.delete(bestKey);
    wordsWithPair.delete(bestKey);
    touched.delete(bestKey);
    pushTouched();
  }

  // two different merges can spell the same token ("ab"+"c", "a"+"bc"): it gets one id
  const vocab = new Map<string, number>();
  for (const token of [...BYTE_SYMBOLS_IN_GPT2_ORDER, ...merges.map(([a, b]) => a + b), ...SPECIAL_TOKENS]) {
    if (!vocab.has(token)) vocab.set(token, vocab.size);
  }
  return new Tokenizer(vocab, merges);
}
