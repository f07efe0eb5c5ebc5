/**
 * "majority": a seeded, controlled task where the rationale spells out, item by item, the information the label is
 * computed from — and where a tiny from-scratch student on a CPU shows, within minutes, whether training on that
 * rationale after the label helps (the paper's question).
 *
 * A fixed "world", the same for every split and every run: `symbols` made-up names, each with a hidden colour among
 * the five choices (balanced: symbols/5 names per colour). A question lists `k` distinct names ("Colour of most:
 * zorp blick dax?"); the answer is the colour most of them have (questions with a tie are never generated), as a
 * letter A–E over the same five colours in the same order every time (chance 20%). The gold rationale states each
 * name's colour, then the vote: "zorp is red. blick is blue. dax is red. Most are red."
 *
 * What makes the paper's questions testable here: the name → colour table is never in the prompt, so it must be
 * memorised. A label-only student can learn it only from aggregated votes (one letter per question); a student
 * trained on the rationale after the label is told every name's colour directly — and, because the rationale is
 * written after the label, it never writes it at test time. Token shuffling breaks the name–colour pairs (their
 * co-occurrence in one rationale survives), sentence shuffling keeps them; key-token selections keep the highest-idf
 * tokens, which on this task are the names (rarer than the colour words).
 *
 * Variants are named in the dataset name: "majority" (40 names, 3 per question) or "majority-<symbols>x<k>" (e.g.
 * "majority-60x5"). Train and test questions are distinct name sets; both splits are generated from the name alone.
 */
import { UserError } from "../errors.ts";
import { COLOURS, MADE_UP_NAMES } from "./hops.ts";
import { mixSeed, randomInt, seededPermutation, seededRandom } from "./random.ts";
import type { Item } from "./types.ts";

export interface MajoritySpec {
  /** Names in the world (a multiple of the 5 colours). */
  symbols: number;
  /** Names per question (odd or even; ties are skipped). */
  k: number;
  /** Items per split. */
  sizes: Record<string, number>;
}

export const MAJORITY_DEFAULT: MajoritySpec = { symbols: 40, k: 3, sizes: { train: 3000, test: 500 } };

const VARIANT = /^majority(?:-(\d{1,3})x(\d{1,2}))?$/;

/** The variant a dataset name asks for, or null when it is not a majority name. */
export function majoritySpec(name: string): MajoritySpec | null {
  const m = VARIANT.exec(name);
  if (!m) return null;
  if (m[1] === undefined) return MAJORITY_DEFAULT;
  const symbols = Number(m[1]);
  const k = Number(m[2]);
  if (symbols < COLOURS.length || symbols % COLOURS.length !== 0 || symbols > MADE_UP_NAMES.length) {
    throw new UserError(`dataset "${name}": the number of names must be a multiple of ${COLOURS.length} between ${COLOURS.length} and ${MADE_UP_NAMES.length}`, 400);
  }
  if (k < 1 || k > symbols) throw new UserError(`dataset "${name}": names per question must be between 1 and ${symbols}`, 400);
  const spec = { ...MAJORITY_DEFAULT, symbols, k };
  const room = questionCount(symbols, k);
  const wanted = Object.values(spec.sizes).reduce((a, b) => a + b, 0);
  if (room < wanted) {
    // small worlds: the splits share what there is, in the default proportions
    const train = Math.floor((room * 6) / 7);
    if (train < 1 || room - train < 1) throw new UserError(`dataset "${name}": only ${room} distinct questions without a tie; use more names`, 400);
    spec.sizes = { train, test: room - train };
  }
  return spec;
}

/** The world: each name and its colour index (balanced over the colours), fixed by the number of names. */
export function majorityWorld(symbols: number): { names: string[]; colours: number[] } {
  const names = seededPermutation(MADE_UP_NAMES.length, mixSeed(0x3a10, symbols)).slice(0, symbols).map((i) => MADE_UP_NAMES[i]);
  const colours = seededPermutation(symbols, mixSeed(0x3a11, symbols)).map((i) => i % COLOURS.length);
  return { names, colours };
}

/** The colour most of `colours` have, or null on a tie. */
export function majorityOf(colours: readonly number[]): number | null {
  const counts = new Array<number>(COLOURS.length).fill(0);
  for (const c of colours) counts[c]++;
  const top = Math.max(...counts);
  return counts.indexOf(top) === counts.lastIndexOf(top) ? counts.indexOf(top) : null;
}

/** How many distinct name sets of size k have no tied vote (exact count over colour-count patterns). */
export function questionCount(symbols: number, k: number): number {
  const per = symbols / COLOURS.length;
  const choose = (n: number, r: number) => {
    let x = 1;
    for (let i = 0; i < r; i++) x = (x * (n - i)) / (i + 1);
    return Math.round(x);
  };
  let total = 0;
  const walk = (colour: number, left: number, counts: number[]) => {
    if (colour === COLOURS.length) {
      if (left === 0 && majorityOf(counts.flatMap((n, c) => new Array<number>(n).fill(c))) !== null) {
        total += counts.reduce((product, n) => product * choose(per, n), 1);
      }
      return;
    }
    for (let n = 0; n <= Math.min(left, per); n++) walk(colour + 1, left - n, [...counts, n]);
  };
  walk(0, k, []);
  return total;
}

const cache = new Map<string, Record<string, Item[]>>();

/** Every split of a variant: train first, then test from a different stream with no name set seen before. */
export function majoritySplits(dataset: string, spec: MajoritySpec = majoritySpec(dataset) ?? MAJORITY_DEFAULT): Record<string, Item[]> {
  const key = `${dataset}\0${JSON.stringify(spec)}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const { names, colours } = majorityWorld(spec.symbols);
  const seen = new Set<string>();
  const splits: Record<string, Item[]> = {};
  for (const [s, split] of Object.keys(spec.sizes).entries()) {
    const random = seededRandom(mixSeed(0x3a12, spec.symbols, spec.k, s));
    const items: Item[] = [];
    while (items.length < spec.sizes[split]) {
      // k distinct names in a random order (a partial Fisher–Yates draw)
      const pool = Array.from({ length: spec.symbols }, (_, i) => i);
      const drawn: number[] = [];
      for (let i = 0; i < spec.k; i++) {
        const j = i + randomInt(random, spec.symbols - i);
        [pool[i], pool[j]] = [pool[j], pool[i]];
        drawn.push(pool[i]);
      }
      const answer = majorityOf(drawn.map((d) => colours[d]));
      const set = [...drawn].sort((a, b) => a - b).join(",");
      if (answer === null || seen.has(set)) continue;
      seen.add(set);
      const index = items.length;
      items.push({
        id: `${dataset}-${split}-${index}`,
        dataset,
        split,
        index,
        question: `Colour of most: ${drawn.map((d) => names[d]).join(" ")}?`,
        choices: COLOURS.map((text, i) => ({ label: String.fromCharCode(65 + i), text })),
        answer: String.fromCharCode(65 + answer),
        rationale: [...drawn.map((d) => `${names[d]} is ${COLOURS[colours[d]]}.`), `Most are ${COLOURS[answer]}.`].join(" "),
      });
    }
    splits[split] = items;
  }
  cache.set(key, splits);
  return splits;
}

/** One split of a variant, determined by the dataset name and split name. */
export function majoritySplit(dataset: string, split: string, spec: MajoritySpec = majoritySpec(dataset) ?? MAJORITY_DEFAULT): Item[] {
  const splits = majoritySplits(dataset, spec);
  if (!splits[split]) throw new UserError(`dataset "${dataset}" has no split "${split}"`, 404);
  return splits[split];
}
