/**
 * The dataset registry: every dataset the project can train or evaluate on, by name. Built in: "cqa" (CommonsenseQA,
 * choices A–E) and "svamp" (math word problems, numeric answers), both shipped under datasets/. Added at run time:
 * any JSON-lines file with a field mapping (`registerJsonl`) or a `datasets/<name>/dataset.json` descriptor.
 *
 * A "dev" split is carved from train by a seeded permutation so model selection never touches test; ask for
 * train with `excludeDev` to train on the rest.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { UserError } from "../errors.ts";
import type { Template } from "../distill/placement.ts";
import { COLOUR_CHOICE_TEMPLATE, COLOURS, hopsSpec, hopsSplit } from "./hops.ts";
import { majoritySpec, majoritySplit } from "./majority.ts";
import { loadJsonlItems, type FieldMapping } from "./jsonl.ts";
import { seededPermutation } from "./random.ts";
import { loadSvampSplit } from "./svamp.ts";
import type { Item } from "./types.ts";

export type AnswerKind = "choice" | "number" | "text";

export interface Dataset {
  name: string;
  description: string;
  answerKind: AnswerKind;
  /** The folder holding the dataset's files (PaLM rationales live in <dir>/llm/), when it has one. */
  dir?: string;
  /** Splits stored as files; "dev" is derived from "train" and not listed. */
  splits: string[];
  readSplit(split: string): Promise<Item[]>;
  /** How its items are written for a student, when not PaLM's few-shot format (DEFAULT_TEMPLATE). */
  template?: Template;
}

export interface JsonlSpec {
  /** One file served as the "train" split … */
  path?: string;
  /** … or one file per split. Relative paths resolve against the current directory (a descriptor: its folder). */
  splits?: Record<string, string>;
  fields: FieldMapping;
  description?: string;
}

export interface SplitOptions {
  /** Size of the dev split carved from train (default: 10% of train, at most 1000). */
  devSize?: number;
  /** Seed of the dev carve-out (default 0). */
  devSeed?: number;
  /** With split "train": leave the dev items out. */
  excludeDev?: boolean;
}

const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const DESCRIPTOR = "dataset.json";

/** Where shipped and descriptor datasets live; COT_DISTILL_DATASETS overrides it (tests, other checkouts). */
export function datasetsDir(): string {
  return process.env.COT_DISTILL_DATASETS ?? resolve(import.meta.dir, "../../datasets");
}

function validName(name: string): string {
  if (!NAME.test(name)) {
    throw new UserError(`invalid dataset name "${name}": use lower-case letters, digits, "-" and "_"`, 400);
  }
  return name;
}

function builtins(): Record<string, Dataset> {
  const cqa = join(datasetsDir(), "cqa");
  const svamp = join(datasetsDir(), "svamp");
  const cqaFields: FieldMapping = { id: "id", question: "question", choices: "choices", answer: "answer" };
  return {
    cqa: {
      name: "cqa",
      description: "CommonsenseQA v1.11 (train 9741, test = official validation 1221), choices A–E",
      answerKind: "choice",
      dir: cqa,
      splits: ["train", "test"],
      readSplit: (split) => loadJsonlItems(join(cqa, `cqa_${split}.json`), cqaFields, "cqa", split),
    },
    svamp: {
      name: "svamp",
      description: "SVAMP math word problems (train 800, test 200), numeric answers",
      answerKind: "number",
      dir: svamp,
      splits: ["train", "test"],
      readSplit: (split) => loadSvampSplit(svamp, split),
    },
  };
}

const registered = new Map<string, Dataset>();

/** The generated "hops" task (./hops.ts) under any of its variant names. */
function hopsDataset(name: string): Dataset | undefined {
  const spec = hopsSpec(name);
  if (!spec) return undefined;
  return {
    name,
    description: `controlled task: ${spec.hops}-hop chains of facts among ${spec.chains} chains, the colour of one (choices A–E: ${COLOURS.join(", ")}), gold rationales (generated, seeded)`,
    answerKind: "choice",
    template: COLOUR_CHOICE_TEMPLATE,
    splits: Object.keys(spec.sizes),
    readSplit: async (split) => hopsSplit(name, split, spec),
  };
}

/** The generated "majority" task (./majority.ts) under any of its variant names. */
function majorityDataset(name: string): Dataset | undefined {
  const spec = majoritySpec(name);
  if (!spec) return undefined;
  return {
    name,
    description: `controlled task: the colour most of ${spec.k} names have, in a fixed world of ${spec.symbols} names with hidden colours (choices A–E: ${COLOURS.join(", ")}), gold rationales stating each name's colour (generated, seeded)`,
    answerKind: "choice",
    template: COLOUR_CHOICE_TEMPLATE,
    splits: Object.keys(spec.sizes),
    readSplit: async (split) => majoritySplit(name, split, spec),
  };
}

function jsonlDataset(name: string, spec: JsonlSpec, baseDir: string, insideDir?: string): Dataset {
  const files = spec.splits ?? (spec.path ? { train: spec.path } : {});
  if (Object.keys(files).length === 0) throw new UserError(`dataset "${name}": give "path" or "splits"`, 422);
  if (!spec.fields?.question || !spec.fields?.answer) {
    throw new UserError(`dataset "${name}": "fields" must name at least "question" and "answer"`, 422);
  }
  const paths = Object.fromEntries(
    Object.entries(files).map(([split, file]) => {
      const path = isAbsolute(file) ? file : resolve(baseDir, file);
      // a descriptor may only point at files of its own folder
      if (insideDir && relative(insideDir, path).startsWith("..")) {
        throw new UserError(`dataset "${name}": split file "${file}" is outside ${insideDir}`, 422);
      }
      return [split, path];
    }),
  );
  return {
    name,
    description: spec.description ?? `JSON lines (${Object.values(paths).join(", ")})`,
    answerKind: spec.fields.choices ? "choice" : "text",
    dir: insideDir,
    splits: Object.keys(paths),
    readSplit: (split) => loadJsonlItems(paths[split], spec.fields, name, split),
  };
}

/** Adds (or replaces) a JSON-lines dataset under `name`. */
export function registerJsonl(name: string, spec: JsonlSpec): Dataset {
  validName(name);
  if (name in builtins()) throw new UserError(`dataset "${name}" is built in and cannot be replaced`, 409);
  const dataset = jsonlDataset(name, spec, process.cwd());
  registered.set(name, dataset);
  splitCache.clear();
  return dataset;
}

function descriptorNames(): string[] {
  const dir = datasetsDir();
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && NAME.test(e.name) && existsSync(join(dir, e.name, DESCRIPTOR)))
    .map((e) => e.name);
}

function descriptorDataset(name: string): Dataset | undefined {
  const dir = join(datasetsDir(), name);
  const path = join(dir, DESCRIPTOR);
  if (!existsSync(path)) return undefined;
  let spec: JsonlSpec;
  try {
    spec = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${(err as Error).message})`, 422);
  }
  return jsonlDataset(name, spec, dir, dir);
}

export function datasetNames(): string[] {
  return [...new Set([...Object.keys(builtins()), "hops", "majority", ...registered.keys(), ...descriptorNames()])].sort();
}

export function getDataset(name: string): Dataset {
  validName(name);
  const dataset = builtins()[name] ?? hopsDataset(name) ?? majorityDataset(name) ?? registered.get(name) ?? descriptorDataset(name);
  if (!dataset) throw new UserError(`unknown dataset "${name}" (known: ${datasetNames().join(", ")})`, 404);
  return dataset;
}

// Parsed split files, by dataset and split: CQA train is 3.4 MB and every preview/training call reads it.
const splitCache = new Map<string, Promise<Item[]>>();

function readCached(dataset: Dataset, split: string): Promise<Item[]> {
  const key = `${dataset.dir ?? ""}\0${dataset.name}\0${split}`;
  let items = splitCache.get(key);
  if (!items) {
    items = dataset.readSplit(split);
    splitCache.set(key, items);
    items.catch(() => splitCache.delete(key));
  }
  return items;
}

export function defaultDevSize(trainSize: number): number {
  return Math.min(1000, Math.round(trainSize * 0.1));
}

/** The train indices that form the dev split, ascending. */
export function devIndices(trainSize: number, opts: SplitOptions = {}): number[] {
  const size = opts.devSize ?? defaultDevSize(trainSize);
  if (!Number.isInteger(size) || size < 1 || size >= trainSize) {
    throw new UserError(`dev size must be an integer in [1, ${trainSize - 1}], got ${size}`, 400);
  }
  return seededPermutation(trainSize, opts.devSeed ?? 0).slice(0, size).sort((a, b) => a - b);
}

/**
 * The items of one split. Dev items keep their train `index` (so PaLM rationales, aligned with train, still line up)
 * and carry split "dev".
 */
export async function loadSplit(name: string, split: string, opts: SplitOptions = {}): Promise<Item[]> {
  const dataset = getDataset(name);
  const known = dataset.splits.includes("train") ? [...dataset.splits, "dev"] : dataset.splits;
  if (!known.includes(split)) {
    throw new UserError(`dataset "${name}" has no split "${split}" (splits: ${known.join(", ")})`, 404);
  }
  if (split !== "dev" && !(split === "train" && opts.excludeDev)) return [...(await readCached(dataset, split))];
  const train = await readCached(dataset, "train");
  const dev = new Set(devIndices(train.length, opts));
  if (split === "train") return train.filter((item) => !dev.has(item.index));
  return train.filter((item) => dev.has(item.index)).map((item) => ({ ...item, split: "dev" }));
}
