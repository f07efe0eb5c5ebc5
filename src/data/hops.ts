/**
 * "hops": a seeded, controlled task where the label depends on information the rationale spells out — the
 * compositional-facts kind of task on which the paper's questions can be tested on a CPU in minutes.
 *
 * An item states facts about a few made-up names, in shuffled order — each chain of `hops − 1` links ("kip is
 * tov.") ends in a described name ("tov is red, big and old.") — and asks for the colour of one chain's first
 * name. The five colours are the answer choices A–E (the same five, in the same order, for every question, so the
 * prompt does not repeat them), so the label is a letter as in CommonsenseQA and chance is 20%.
 *
 * The gold rationale restates the facts followed ("kip is tov. tov is red, big and old."). What makes the
 * paper's question testable: the rationale's size and age words are NOT implied by the label (the letter gives
 * the colour only), so a student trained to write them after the label must learn the same lookup — find the
 * asked name's fact, copy from it — that the label needs, from two or three more supervised tokens per question
 * than the label alone gives. Hops > 1 add intermediate names the label-only student has to resolve internally.
 *
 * Variants are named in the dataset name: "hops" (1 hop, 4 facts) or "hops-<h>x<c>" for h hops and c chains
 * (e.g. "hops-2x3"); a split is generated from (name, split) alone, so every process sees the same items.
 */
import type { Template } from "../distill/placement.ts";
import { UserError } from "../errors.ts";
import { mixSeed, randomInt, seededPermutation, seededRandom, type Random } from "./random.ts";
import type { Item } from "./types.ts";

export interface HopsSpec {
  /** Facts followed from the asked name to its description (1 = a direct lookup). */
  hops: number;
  /** Chains in the question: the one asked about and distractors. */
  chains: number;
  /** Items per split. */
  sizes: Record<string, number>;
}

export const HOPS_DEFAULT: HopsSpec = { hops: 1, chains: 4, sizes: { train: 4000, test: 500 } };

export const COLOURS = ["red", "blue", "green", "yellow", "black"] as const;
const SIZES = ["big", "small", "tall", "short", "wide"] as const;
const AGES = ["old", "young", "new", "ripe", "raw"] as const;

/**
 * The generated tasks' format (hops, majority): the prompt is the question alone ("… Colour of kip?"): the five
 * choices never change, and leaving them out halves the sequence, which is what a CPU budget buys steps with.
 * Labels are written as CQA's "(A)".
 */
export const COLOUR_CHOICE_TEMPLATE: Template = {
  prompt: "{question}",
  choice: "",
  label: "({label})",
  answerPrefix: "So the answer is",
  answerSuffix: ".",
  separator: " ",
};

/** Short pronounceable names (the compact BPE learns each as one token), shared by the generated tasks. */
export const MADE_UP_NAMES: readonly string[] = (() => {
  const onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"];
  const vowels = ["a", "e", "i", "o", "u"];
  const codas = ["x", "p", "n", "l"];
  const all: string[] = [];
  for (const o of onsets) for (const v of vowels) for (const c of codas) all.push(o + v + c);
  return all;
})();

const VARIANT = /^hops(?:-(\d)x(\d))?$/;

/** The variant a dataset name asks for, or null when it is not a hops name. */
export function hopsSpec(name: string): HopsSpec | null {
  const m = VARIANT.exec(name);
  if (!m) return null;
  if (m[1] === undefined) return HOPS_DEFAULT;
  const hops = Number(m[1]);
  const chains = Number(m[2]);
  if (hops < 1 || chains < 1) throw new UserError(`dataset "${name}": hops and chains must be at least 1`, 400);
  return { ...HOPS_DEFAULT, hops, chains };
}

function pick<T>(random: Random, from: readonly T[]): T {
  return from[randomInt(random, from.length)];
}

/** One question: `chains` chains of `hops` facts, distinct names throughout, the first chain asked about. */
export function hopsItem(spec: HopsSpec, dataset: string, split: string, index: number, seed: number): Item {
  const random = seededRandom(mixSeed(seed, index));
  const names = seededPermutation(MADE_UP_NAMES.length, mixSeed(seed, index, 1)).slice(0, spec.chains * spec.hops).map((i) => MADE_UP_NAMES[i]);
  const chains = Array.from({ length: spec.chains }, (_, c) => ({
    names: names.slice(c * spec.hops, (c + 1) * spec.hops),
    colour: pick(random, COLOURS),
    size: pick(random, SIZES),
    age: pick(random, AGES),
  }));
  const factsOf = (chain: (typeof chains)[number]) =>
    chain.names.map((name, i) =>
      i + 1 < chain.names.length ? `${name} is ${chain.names[i + 1]}.` : `${name} is ${chain.colour}, ${chain.size} and ${chain.age}.`,
    );
  const facts = chains.flatMap(factsOf);
  const order = seededPermutation(facts.length, mixSeed(seed, index, 2));
  const asked = chains[0];
  return {
    id: `${dataset}-${split}-${index}`,
    dataset,
    split,
    index,
    question: `${order.map((i) => facts[i]).join(" ")} Colour of ${asked.names[0]}?`,
    choices: COLOURS.map((text, i) => ({ label: String.fromCharCode(65 + i), text })),
    answer: String.fromCharCode(65 + COLOURS.indexOf(asked.colour)),
    rationale: factsOf(asked).join(" "),
  };
}

/** A whole split, determined by the dataset name and split name. */
export function hopsSplit(dataset: string, split: string, spec: HopsSpec = hopsSpec(dataset) ?? HOPS_DEFAULT): Item[] {
  const size = spec.sizes[split];
  if (size === undefined) throw new UserError(`dataset "${dataset}" has no split "${split}"`, 404);
  // train and test draw from different streams: no test question is a train question
  const seed = mixSeed(0x5eed, split === "train" ? 1 : 2, spec.hops, spec.chains);
  return Array.from({ length: size }, (_, index) => hopsItem(spec, dataset, split, index, seed));
}
