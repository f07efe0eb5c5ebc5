/**
 * The PaLM-540B chain-of-thought rationales shipped with CQA and SVAMP (Distilling Step-by-Step's llm/ files).
 * Each file is a JSON list of RAW few-shot continuations: the model answers, then often invents the next "Q:".
 * As in the original data_utils.py: cut at the first "\n\nQ:", split at the answer phrase into the rationale and the
 * teacher's answer. Entries are aligned by index with the split's items; dev items map back to their train index.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { evaluateArithmetic } from "./arithmetic.ts";
import { getDataset, loadSplit, type AnswerKind, type SplitOptions } from "./registry.ts";
import { formatNumber } from "./svamp.ts";

export interface PalmRationale {
  /** The item's index in its split file (the train index for dev items). */
  index: number;
  rationale: string;
  /** The teacher's answer in Item.answer's form ("D", "42"), or null when it named no single readable answer. */
  label: string | null;
  /** The answer exactly as the teacher wrote it after the answer phrase, e.g. "(d) math problem." or "(84 / 2).". */
  answerText: string;
}

// "So the answer is" (CQA) and "The answer is" (SVAMP); the first one ends the rationale
const ANSWER_PHRASE = /(?:So )?[Tt]he answer is/;

function readChoiceLabel(answerText: string): string | null {
  const named = [...answerText.matchAll(/\(([a-z])\)/gi)].map((m) => m[1].toUpperCase());
  // "either (a) aquarium or (e) pond." names no single answer
  return new Set(named).size === 1 ? named[0] : null;
}

function readNumber(answerText: string): string | null {
  const value = evaluateArithmetic(answerText.replace(/\.\s*$/, ""));
  return value === null ? null : formatNumber(value);
}

/** One raw continuation → rationale and answer; null when the teacher never reached an answer. */
export function parsePalmOutput(raw: string, answerKind: AnswerKind): Omit<PalmRationale, "index"> | null {
  const answered = raw.split("\n\nQ:")[0];
  const phrase = ANSWER_PHRASE.exec(answered);
  if (!phrase) return null;
  const rationale = answered.slice(0, phrase.index).trim();
  const answerText = answered.slice(phrase.index + phrase[0].length).trim();
  const label =
    answerKind === "choice" ? readChoiceLabel(answerText) : answerKind === "number" ? readNumber(answerText) : answerText || null;
  return { rationale, label, answerText };
}

/** The files of one stored split, in order: <split>_CoT_0.json, <split>_CoT_1.json, … */
function rawFiles(dir: string, split: string): string[] {
  const pattern = new RegExp(`^${split}_CoT_(\\d+)\\.json$`);
  let names: string[];
  try {
    names = readdirSync(join(dir, "llm"));
  } catch {
    names = [];
  }
  return names
    .map((name) => ({ name, part: pattern.exec(name)?.[1] }))
    .filter((f) => f.part !== undefined)
    .sort((a, b) => Number(a.part) - Number(b.part))
    .map((f) => join(dir, "llm", f.name));
}

const rawCache = new Map<string, Promise<string[]>>();

async function readRaw(dir: string, split: string): Promise<string[]> {
  const key = `${dir}\0${split}`;
  let raw = rawCache.get(key);
  if (!raw) {
    const files = rawFiles(dir, split);
    raw = Promise.all(files.map((f) => Bun.file(f).json() as Promise<string[]>)).then((parts) => parts.flat());
    rawCache.set(key, raw);
  }
  return raw;
}

/** The shipped PaLM rationale of every item of the split, or null where the teacher gave no answer. */
export async function palmRationales(name: string, split: string, opts: SplitOptions = {}): Promise<Array<PalmRationale | null>> {
  const dataset = getDataset(name);
  const items = await loadSplit(name, split, opts);
  const fileSplit = split === "dev" ? "train" : split;
  const raw = dataset.dir ? await readRaw(dataset.dir, fileSplit) : [];
  if (raw.length === 0) throw new UserError(`dataset "${name}" ships no PaLM rationales for split "${fileSplit}"`, 404);
  const total = (await loadSplit(name, fileSplit)).length;
  if (raw.length !== total) {
    throw new UserError(`dataset "${name}": ${raw.length} PaLM outputs for ${total} ${fileSplit} items`, 422);
  }
  return items.map((item) => {
    const parsed = parsePalmOutput(raw[item.index], dataset.answerKind);
    return parsed && { index: item.index, ...parsed };
  });
}
