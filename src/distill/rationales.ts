/**
 * Where a student's training rationales come from — one notion for `preview`, `train`, grid files and POST /v1/runs:
 *
 *   --rationales <teacher model>   the rationale store (--db): what that teacher answered for the dataset, under one
 *                                  template version (the newest by default, or --rationale-template V)
 *   --rationales palm              the shipped PaLM-540B outputs
 *   --rationales gold              the dataset's own worked solutions (generated tasks such as hops ship them)
 *   --rationales FILE.jsonl        what GET /v1/rationales exports, or the simple {"id" | "index", "rationale"} form
 *
 * A source gives, per item, every answer it holds with its provenance (teacher, template, sample, parsed label,
 * agreement with gold). Which of them become training examples is decided by two pure functions of that list:
 * the filter (`agree`: the parsed label equals gold; `any`) and the sample mode (`first`, `all`, `majority`).
 */
import type { Database } from "bun:sqlite";
import { existsSync, statSync } from "node:fs";
import { palmRationales } from "../data/palm.ts";
import { readJsonLines } from "../data/jsonl.ts";
import { getDataset, type SplitOptions } from "../data/registry.ts";
import type { Item } from "../data/types.ts";
import { UserError } from "../errors.ts";
import { DEFAULT_DB_PATH, openDatabase } from "../store/db.ts";
import { RATIONALE_PARTS, type RationalePart, RationaleRecordSchema, RationaleStore, rationaleText, type TeacherTemplate } from "../store/rationales.ts";
import { agreesWithGold, answerFormatOf } from "../teacher/parse.ts";
import { PALM_MODEL, PALM_TEMPLATE } from "../teacher/palm.ts";
import type { AnswerFormat } from "../teacher/prompts.ts";
import * as v from "valibot";

export { RATIONALE_PARTS, type RationalePart };
export const RATIONALE_FILTERS = ["agree", "any"] as const;
export type RationaleFilter = (typeof RATIONALE_FILTERS)[number];
export const SAMPLE_MODES = ["first", "all", "majority"] as const;
export type SampleMode = (typeof SAMPLE_MODES)[number];

/** One answer a source holds for an item, with where it came from. */
export interface TeacherAnswer {
  rationale: string;
  /** The teacher's parsed answer in the item's label form ("B", "42"); null when none was readable. */
  label: string | null;
  /** Label equals the gold answer; null when unknown (a file without labels). */
  agrees: boolean | null;
  sampleIndex: number;
  /** The model that answered (requested model when the API named none); null when the source does not say. */
  teacher: string | null;
  template: string | null;
  /** The rationale store's key, for store-backed answers. */
  key: string | null;
}

export type SourceKind = "store" | "palm" | "gold" | "file";

export interface RationaleSource {
  kind: SourceKind;
  /** What --rationales said. */
  name: string;
  /** The teacher model (store), "palm-540b", "gold" (the dataset's own), or the models a file names (null if it names none). */
  teacher: string | null;
  /** The template version used (store, palm; a file's if it names exactly one). */
  template: string | null;
  /** Per item, in the items' order, every answer held for it (sorted by sample index). */
  answers(items: Item[]): Promise<TeacherAnswer[][]>;
}

export interface SourceOptions {
  dataset: string;
  /** The split the items come from (PaLM outputs are aligned by split). */
  split: string;
  splitOptions?: SplitOptions;
  /** Database for teacher names (default $COT_DISTILL_DB or cot-distill.sqlite). */
  db?: Database | string;
  /** Template version of a store source; default: the teacher's newest. */
  template?: string;
  /** Which part of a stored answer is the rationale: the visible explanation (default), the reasoning trace, or both. */
  part?: RationalePart;
}

/** How an item's answer is compared with gold: its choices, its dataset's kind, its gold answer (src/teacher/parse.ts). */
function formatOf(dataset: string): (item: Item) => AnswerFormat {
  const kind = getDataset(dataset).answerKind;
  return (item) => answerFormatOf(item, kind);
}

/**
 * Each item's first-sample rationale text from a source, unfiltered (null where it has none): for tools and tests
 * that want the text alone, not the training choice.
 */
export async function loadRationales(dataset: string, items: Item[], name = defaultRationaleSource(items), split = "train"): Promise<Array<string | null>> {
  const source = await openRationaleSource(name, { dataset, split });
  return (await source.answers(items)).map((answers) => answers[0]?.rationale ?? null);
}

/**
 * Whether `--rationales` names a file rather than a teacher: it ends in .jsonl/.json (what the server goes by: it
 * never looks at the disk for a name), or — on the CLI — it is an existing file. Teacher names may hold a "/"
 * ("meta-llama/Llama-3.1-70B-Instruct"), so a folder part alone says nothing.
 */
export function isRationaleFile(name: string, lookOnDisk = false): boolean {
  return /\.jsonl?$/i.test(name) || (lookOnDisk && existsSync(name) && statSync(name).isFile());
}

/** What a run trains on without --rationales: "gold" for a dataset that ships its own worked solutions (generated tasks), else the shipped PaLM ones. */
export function defaultRationaleSource(items: Item[]): string {
  return items.some((item) => item.rationale !== undefined) ? "gold" : "palm";
}

/** The source `--rationales` names; a bad name fails here, before any work, with what would have been valid. */
export async function openRationaleSource(name: string, options: SourceOptions): Promise<RationaleSource> {
  if (name === "palm") return palmSource(options);
  if (name === "gold") return goldSource(options);
  // "teacher:NAME" is a teacher, whatever the disk holds (the server passes names so: it never reads a path it did not resolve)
  if (name.startsWith(TEACHER_PREFIX)) return storeSource(name.slice(TEACHER_PREFIX.length), options);
  if (isRationaleFile(name, true)) return fileSource(name, options);
  return storeSource(name, options);
}

export const TEACHER_PREFIX = "teacher:";

/** A model name as servers spell them ("gpt-4o-mini", "meta-llama/Llama-3.1-8B-Instruct", "qwen2.5:7b"): no path tricks. */
const TEACHER_NAME = /^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}(\/[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}){0,3}$/;

/**
 * On the server: a teacher name (to look up in its own store), or null when the value must be resolved as a file in
 * the data root — a name ending in .jsonl/.json, or anything that is not plainly a model name ("..", "/…", "~").
 */
export function serverTeacherName(name: string): string | null {
  if (name.startsWith(TEACHER_PREFIX)) name = name.slice(TEACHER_PREFIX.length);
  if (isRationaleFile(name) || !TEACHER_NAME.test(name) || name.split("/").includes("..")) return null;
  return name;
}

function palmSource(options: SourceOptions): RationaleSource {
  const format = formatOf(options.dataset);
  return {
    kind: "palm",
    name: "palm",
    teacher: PALM_MODEL,
    template: PALM_TEMPLATE,
    async answers(items) {
      const palm = await palmRationales(options.dataset, options.split, options.splitOptions);
      const byIndex = new Map(palm.flatMap((p) => (p ? [[p.index, p] as const] : [])));
      return items.map((item) => {
        const p = byIndex.get(item.index);
        if (!p) return [];
        const agrees = agreesWithGold(p.label, item.answer, format(item));
        return [{ rationale: p.rationale, label: p.label, agrees, sampleIndex: 0, teacher: PALM_MODEL, template: PALM_TEMPLATE, key: null }];
      });
    },
  };
}

/** The dataset's own rationales (item.rationale): correct by construction, so every one agrees with gold. */
function goldSource(options: SourceOptions): RationaleSource {
  return {
    kind: "gold",
    name: "gold",
    teacher: "gold",
    template: null,
    async answers(items) {
      if (!items.some((item) => item.rationale !== undefined)) {
        throw new UserError(`dataset "${options.dataset}" ships no gold rationales (use "palm", a teacher or a file)`, 422);
      }
      return items.map((item) =>
        item.rationale === undefined ? [] : [{ rationale: item.rationale, label: item.answer, agrees: true, sampleIndex: 0, teacher: "gold", template: null, key: null }],
      );
    },
  };
}

/** A read-only look at the store: a missing database file is an error, never created by a failed run. */
function openStore(db: Database | string | undefined): { store: RationaleStore; close: () => void; path: string } {
  if (db !== undefined && typeof db !== "string") return { store: new RationaleStore(db), close: () => {}, path: db.filename };
  const path = db ?? DEFAULT_DB_PATH;
  if (path !== ":memory:" && !existsSync(path)) {
    throw new UserError(`no rationale store at ${path} (give --db, or generate rationales first: bun src/cli.ts rationales --dataset D --split train)`, 404);
  }
  const database = openDatabase(path);
  return { store: new RationaleStore(database), close: () => database.close(), path };
}

function describeTeachers(templates: TeacherTemplate[]): string {
  const byModel = new Map<string, number>();
  for (const t of templates) byModel.set(t.model, (byModel.get(t.model) ?? 0) + t.rationales);
  return [...byModel].map(([model, n]) => `${model} (${n})`).join(", ");
}

async function storeSource(teacher: string, options: SourceOptions): Promise<RationaleSource> {
  const { store, close, path } = openStore(options.db);
  try {
    const templates = store.teacherTemplates(options.dataset, teacher);
    if (templates.length === 0) {
      const known = store.teacherTemplates(options.dataset);
      throw new UserError(
        known.length === 0
          ? `--rationales "${teacher}": the store ${path} has no rationales for dataset ${options.dataset} (teachers: none; generate some with \`rationales --dataset ${options.dataset} --split train\`, or use palm or a file)`
          : `--rationales "${teacher}": the store ${path} has no rationales of that teacher for dataset ${options.dataset}; teachers it has: ${describeTeachers(known)}`,
        404,
      );
    }
    const chosen = options.template === undefined ? templates[0] : templates.find((t) => t.template === options.template);
    if (!chosen) {
      throw new UserError(`--rationale-template "${options.template}": teacher ${teacher} has no answers for ${options.dataset} under it; templates: ${templates.map((t) => `${t.template} (${t.rationales})`).join(", ")}`, 404);
    }
    const records = store.teacherAnswers(options.dataset, teacher, chosen.template);
    const format = formatOf(options.dataset);
    // one answer per (item, sample): several generation settings may have answered the same sample; the newest wins
    const byItem = new Map<string, Map<number, TeacherAnswer>>();
    for (const r of records) {
      if (r.itemId === null) continue;
      const samples = byItem.get(r.itemId) ?? new Map<number, TeacherAnswer>();
      samples.set(r.sampleIndex, {
        // an answer without the part asked for (no reasoning trace) has an empty rationale: dropped as such
        rationale: rationaleText(r, options.part) ?? "",
        label: r.label,
        agrees: r.agrees,
        sampleIndex: r.sampleIndex,
        teacher: r.answeredBy ?? r.model,
        template: r.template,
        key: r.key,
      });
      byItem.set(r.itemId, samples);
    }
    return {
      kind: "store",
      name: teacher,
      teacher: chosen.model,
      template: chosen.template,
      async answers(items) {
        return items.map((item) =>
          [...(byItem.get(item.id)?.values() ?? [])]
            .map((a) => (a.agrees === null ? { ...a, agrees: agreesWithGold(a.label, item.answer, format(item)) } : a))
            .sort((a, b) => a.sampleIndex - b.sampleIndex),
        );
      },
    };
  } finally {
    close();
  }
}

const SIMPLE_FORM = `{"id" or "index", "rationale"[, "label", "sample"]}`;
const EXPORT_FORM = `a line of GET /v1/rationales ({"itemId", "dataset", "model", "template", "sampleIndex", "rationale", "label", …})`;

async function fileSource(path: string, options: SourceOptions): Promise<RationaleSource> {
  if (!existsSync(path)) throw new UserError(`--rationales: no such file ${path} (a teacher name, palm, or a JSON-lines file)`, 404);
  const format = formatOf(options.dataset);
  const byKey = new Map<string, Array<Omit<TeacherAnswer, "agrees"> & { agrees?: boolean | null }>>();
  const models = new Set<string>();
  const templates = new Set<string>();
  const otherDatasets = new Set<string>();
  const add = (key: string, answer: Omit<TeacherAnswer, "agrees"> & { agrees?: boolean | null }) => byKey.set(key, [...(byKey.get(key) ?? []), answer]);
  for (const { line, row } of await readJsonLines(path).catch((err) => {
    throw new UserError(`--rationales ${(err as Error).message}`, 422);
  })) {
    if ("itemId" in row) {
      const parsed = v.safeParse(RationaleRecordSchema, row);
      if (!parsed.success) {
        const issue = parsed.issues[0];
        throw new UserError(`${path}:${line}: ${v.getDotPath(issue) ?? "(line)"}: ${issue.message} (expected ${EXPORT_FORM})`, 422);
      }
      const r = parsed.output;
      if (r.dataset !== null && r.dataset !== options.dataset) {
        otherDatasets.add(r.dataset);
        continue;
      }
      if (r.itemId === null) continue;
      models.add(r.answeredBy ?? r.model);
      templates.add(r.template);
      add(r.itemId, { rationale: rationaleText(r, options.part) ?? "", label: r.label, agrees: r.agrees, sampleIndex: r.sampleIndex, teacher: r.answeredBy ?? r.model, template: r.template, key: r.key ?? null });
      continue;
    }
    const key = row.id ?? row.index;
    const label = row.label ?? null;
    if ((typeof key !== "string" && typeof key !== "number") || typeof row.rationale !== "string" || (label !== null && typeof label !== "string")) {
      throw new UserError(`${path}:${line}: expected ${SIMPLE_FORM} or ${EXPORT_FORM}; found fields ${Object.keys(row).join(", ") || "(none)"}`, 422);
    }
    const sample = typeof row.sample === "number" ? row.sample : (byKey.get(String(key))?.length ?? 0);
    add(String(key), { rationale: row.rationale, label, sampleIndex: sample, teacher: null, template: null, key: null });
  }
  if (byKey.size === 0 && otherDatasets.size > 0) {
    throw new UserError(`${path}: no rationales for dataset ${options.dataset} (the file holds ${[...otherDatasets].join(", ")})`, 422);
  }
  return {
    kind: "file",
    name: path,
    teacher: models.size > 0 ? [...models].sort().join(", ") : null,
    template: templates.size === 1 ? [...templates][0] : null,
    async answers(items) {
      return items.map((item) =>
        (byKey.get(item.id) ?? byKey.get(String(item.index)) ?? [])
          .map((a) => ({ ...a, agrees: a.agrees ?? (a.label === null ? null : agreesWithGold(a.label, item.answer, format(item))) }))
          .sort((a, b) => a.sampleIndex - b.sampleIndex),
      );
    },
  };
}

/** Why an item has no training rationale. */
export type DropReason = "no_answer" | "disagrees" | "majority_disagrees" | "empty_rationale";

export type ItemChoice = { answers: TeacherAnswer[] } | { dropped: DropReason };

/** Whether an answer passes the filter: `agree` keeps those matching gold (and those whose agreement is unknown). */
function passes(answer: TeacherAnswer, filter: RationaleFilter): boolean {
  return filter === "any" || answer.agrees !== false;
}

/** The most voted label (ties: the one voted first); null when no answer has a label. */
export function majorityLabel(answers: TeacherAnswer[]): string | null {
  const votes = new Map<string, number>();
  for (const a of answers) if (a.label !== null) votes.set(a.label, (votes.get(a.label) ?? 0) + 1);
  let best: string | null = null;
  for (const [label, n] of votes) if (best === null || n > votes.get(best)!) best = label;
  return best;
}

/**
 * Which of an item's answers become training rationales (pure):
 *  - first:    the first sample only (dropped if the filter rejects it)
 *  - all:      every sample the filter keeps, each its own training example
 *  - majority: self-consistency — the most voted label wins; the item is kept when the winner passes the filter
 *              (`agree`: the winner is the gold label), with the first sample that gave the winning label
 */
export function chooseAnswers(answers: TeacherAnswer[], filter: RationaleFilter, samples: SampleMode): ItemChoice {
  const usable = answers.filter((a) => a.rationale.trim() !== "");
  if (answers.length === 0) return { dropped: "no_answer" };
  if (usable.length === 0) return { dropped: "empty_rationale" };
  if (samples === "first") return passes(usable[0], filter) ? { answers: [usable[0]] } : { dropped: "disagrees" };
  if (samples === "all") {
    const kept = usable.filter((a) => passes(a, filter));
    return kept.length > 0 ? { answers: kept } : { dropped: "disagrees" };
  }
  const winner = majorityLabel(usable);
  const pick = winner === null ? usable[0] : usable.find((a) => a.label === winner)!;
  return passes(pick, filter) ? { answers: [pick] } : { dropped: "majority_disagrees" };
}

/** What a run records about its rationales (run.json, the runs table). */
export interface RationaleReport {
  source: SourceKind;
  /** What --rationales said. */
  name: string;
  teacher: string | null;
  template: string | null;
  filter: RationaleFilter;
  samples: SampleMode;
  /** Which part of the stored answers was trained on. */
  part: RationalePart;
  /** Items considered (before --limit stops the scan). */
  items: number;
  /** Items with at least one training rationale. */
  withRationale: number;
  /** Training examples (more than items with `samples: all`). */
  examples: number;
  /** Items that passed with an answer whose agreement with gold is unknown (a file without labels). */
  unchecked: number;
  dropped: Record<DropReason, number>;
}

export interface ChosenExample {
  item: Item;
  /** Null only for placement "none" on data without rationales. */
  answer: TeacherAnswer | null;
}

export function emptyDrops(): Record<DropReason, number> {
  return { no_answer: 0, disagrees: 0, majority_disagrees: 0, empty_rationale: 0 };
}

/** One line about a drop, for logs and preview. */
export function describeDrops(dropped: Record<DropReason, number>): string {
  const parts = Object.entries(dropped).filter(([, n]) => n > 0).map(([why, n]) => `${n} ${why.replaceAll("_", " ")}`);
  return parts.length ? parts.join(", ") : "none";
}
