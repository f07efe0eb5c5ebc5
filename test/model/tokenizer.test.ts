import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { END_OF_TEXT, loadTokenizer, MASK, PAD, saveTokenizer, trainTokenizer } from "../../src/model/tokenizer.ts";
import { UserError } from "../../src/errors.ts";

const FIXTURE = join(import.meta.dir, "../fixtures/tiny-random-gpt2");
const temp = mkdtempSync(join(tmpdir(), "cot-tok-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const CORPUS = [
  "Q: What do people use to absorb extra ink from a fountain pen? Answer Choices: (a) shirt pocket (b) blotter",
  "A: The answer must be used to absorb extra ink. Blotting paper absorbs liquids like ink. So the answer is (b).",
  "Q: Dan had $3.50 and spent 2/3 of it; how much is left? A: 3.50 − 2.33 = 1.17, so the answer is 1.17.",
  "Ünïcödé tèxt — naïve café, 日本語のテキスト, emoji 🙂👍🏽, and\ttabs\nnew lines\r\n  indented  ",
  "They're sure it's what we'll do; I'd say you've got it, I'm told.",
];

describe("GPT-2 tokenizer from vocab.json + merges.txt (tiny-random-gpt2)", () => {
  test("applies merges by rank, as derived by hand from merges.txt", async () => {
    const tok = await loadTokenizer(FIXTURE);
    expect(tok.vocabSize).toBe(1000);
    // " the": Ġ t (rank 0), h e (1), Ġt he (4) → "Ġthe" = 198
    expect(tok.encode(" the")).toEqual([198]);
    // "the": h e (1) wins over t h (105); there is no "t he" merge → t=84, he=195
    expect(tok.encode("the")).toEqual([84, 195]);
    // " world": Ġ w (12), o r (16), l d (158), or ld (556); no "Ġw orld" → Ġw=206, orld=750
    expect(tok.encode(" world")).toEqual([206, 750]);
    expect(tok.encode("the the")).toEqual([84, 195, 198]);
  });

  test("specials are matched whole; bytes missing from the vocabulary become <|endoftext|>, as in HF", async () => {
    const tok = await loadTokenizer(FIXTURE);
    expect(tok.eotId).toBe(0);
    expect(tok.encode(` the${END_OF_TEXT} the`)).toEqual([198, 0, 198]);
    expect(tok.encode("{")).toEqual([0]); // "{" is not in this 1000-token vocabulary
    expect(tok.decode([198, 0, 206, 750])).toBe(` the${END_OF_TEXT} world`);
  });

  test("round trip on the text it covers; bad ids and folders are UserErrors", async () => {
    const tok = await loadTokenizer(FIXTURE);
    const text = "The answer is (b), so they're right: 42 + 7.";
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(() => tok.decode([1000])).toThrow(UserError);
    await expect(loadTokenizer(temp)).rejects.toThrow(/no vocab.json/);
  });
});

describe("compact byte-level BPE trained on a corpus", () => {
  test("learns the most frequent pairs first and stops below minFrequency", () => {
    const tok = trainTokenizer(["ab ab ab ab cd"], { vocabSize: 400 });
    // pre-tokens "ab", "Ġab"×3, "Ġcd": a b ×4 first, then Ġ ab ×3; pairs seen once are not merged
    expect(tok.merges).toEqual([["a", "b"], ["Ġ", "ab"]]);
    expect(tok.vocabSize).toBe(256 + 2 + 3);
    expect(tok.encode(" ab cd ab")).toEqual([257, tok.encode(" ")[0], tok.encode("c")[0], tok.encode("d")[0], 257]);
  });

  test("round-trips unicode, whitespace and specials; specials come last", () => {
    const tok = trainTokenizer(CORPUS, { vocabSize: 300 });
    expect(tok.vocabSize).toBe(300);
    expect([tok.eotId, tok.padId, tok.maskId]).toEqual([297, 298, 299]);
    for (const text of [...CORPUS, "unseen: Ωμέγα ∑ 🚀 𝔘𝔫𝔦", `x${MASK}y${PAD}`]) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.encode(`a${MASK}`).at(-1)).toBe(299);
    // training compresses: the corpus needs far fewer tokens than bytes
    const bytes = CORPUS.reduce((n, t) => n + new TextEncoder().encode(t).length, 0);
    expect(CORPUS.reduce((n, t) => n + tok.encode(t).length, 0)).toBeLessThan(bytes * 0.75);
  });

  test("deterministic: same corpus (in any order) gives the same merges; save → load gives the same tokenizer", async () => {
    const a = trainTokenizer(CORPUS, { vocabSize: 320 });
    const b = trainTokenizer([...CORPUS].reverse(), { vocabSize: 320 });
    expect(b.merges).toEqual(a.merges);
    expect([...b.vocab]).toEqual([...a.vocab]);
    await saveTokenizer(join(temp, "compact"), a);
    const loaded = await loadTokenizer(join(temp, "compact"));
    expect(new Map([...loaded.vocab].sort((x, y) => x[1] - y[1]))).toEqual(new Map(a.vocab));
    expect(loaded.merges).toEqual(a.merges);
    for (const text of CORPUS) expect(loaded.encode(text)).toEqual(a.encode(text));
    expect(() => trainTokenizer(CORPUS, { vocabSize: 100 })).toThrow(/at least 259/);
  });
});
