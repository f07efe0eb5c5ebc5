/**
 * Generic JSON-lines datasets: one JSON object per line, mapped onto `Item` by a field mapping. CommonsenseQA ships in
 * this shape, and so can any user dataset (`registerJsonl`, or a `datasets/<name>/dataset.json` descriptor).
 */
import { UserError } from "../errors.ts";
import type { Choice, Item } from "./types.ts";

/** Where each Item field is found in a row; dotted paths ("meta.question") reach into nested objects. */
export interface FieldMapping {
  question: string;
  /** An array of strings (labelled A, B, C …), an array of {label, text}, or an object {A: text, …}. */
  choices?: string;
  /** A choice label, a choice's text (mapped to its label), or for open answers any string/number. */
  answer: string;
  /** Absent: the id is `${split}-${index}`. */
  id?: string;
}

export interface JsonLine {
  /** 1-based line number in the file, for error messages. */
  line: number;
  row: Record<string, unknown>;
}

export async function readJsonLines(path: string): Promise<JsonLine[]> {
  const file = Bun.file(path);
  if (!(await file.exists())) throw new UserError(`dataset file not found: ${path}`, 404);
  const lines: JsonLine[] = [];
  (await file.text()).split("\n").forEach((text, i) => {
    if (text.trim() === "") return;
    let row: unknown;
    try {
      row = JSON.parse(text);
    } catch {
      // the parser's message quotes the text it choked on: never echo a file's contents (it may reach an HTTP client)
      throw new UserError(`${path}:${i + 1}: not valid JSON`, 422);
    }
    if (row === null || typeof row !== "object" || Array.isArray(row)) {
      throw new UserError(`${path}:${i + 1}: expected a JSON object per line`, 422);
    }
    lines.push({ line: i + 1, row: row as Record<string, unknown> });
  });
  return lines;
}

function lookup(row: Record<string, unknown>, path: string): unknown {
  let value: unknown = row;
  for (const key of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/** Reads one mapped field; a missing or empty one is the user's data error, named by file, line and field. */
function field(source: string, at: JsonLine, path: string): unknown {
  const value = lookup(at.row, path);
  if (value === undefined || value === null || value === "") {
    throw new UserError(`${source}:${at.line}: missing field "${path}"`, 422);
  }
  return value;
}

function scalar(source: string, at: JsonLine, path: string): string {
  const value = field(source, at, path);
  if (typeof value === "string") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  throw new UserError(`${source}:${at.line}: field "${path}" must be a string or number`, 422);
}

export function choiceLabel(position: number): string {
  return String.fromCharCode(65 + position);
}

function parseChoices(source: string, at: JsonLine, path: string): Choice[] {
  const value = field(source, at, path);
  const bad = () => new UserError(`${source}:${at.line}: field "${path}" must be a list of choices`, 422);
  if (Array.isArray(value)) {
    return value.map((entry, i) => {
      if (typeof entry === "string") return { label: choiceLabel(i), text: entry };
      if (entry && typeof entry === "object" && typeof entry.text === "string") {
        return { label: typeof entry.label === "string" ? entry.label : choiceLabel(i), text: entry.text };
      }
      throw bad();
    });
  }
  if (value && typeof value === "object") {
    return Object.entries(value).map(([label, text]) => {
      if (typeof text !== "string") throw bad();
      return { label, text };
    });
  }
  throw bad();
}

/** The gold label: already a label, or the text of a choice (the first one when a text repeats, as in CQA). */
function answerLabel(source: string, at: JsonLine, path: string, answer: string, choices: Choice[]): string {
  if (choices.some((c) => c.label === answer)) return answer;
  const byText = choices.find((c) => c.text === answer);
  if (byText) return byText.label;
  throw new UserError(`${source}:${at.line}: field "${path}" ("${answer}") is neither a choice label nor a choice text`, 422);
}

export function mapRow(source: string, at: JsonLine, fields: FieldMapping, where: Pick<Item, "dataset" | "split" | "index">): Item {
  const question = scalar(source, at, fields.question);
  const answer = scalar(source, at, fields.answer);
  const id = fields.id ? scalar(source, at, fields.id) : `${where.split}-${where.index}`;
  if (!fields.choices) return { id, ...where, question, answer };
  const choices = parseChoices(source, at, fields.choices);
  return { id, ...where, question, choices, answer: answerLabel(source, at, fields.answer, answer, choices) };
}

export async function loadJsonlItems(path: string, fields: FieldMapping, dataset: string, split: string): Promise<Item[]> {
  const lines = await readJsonLines(path);
  return lines.map((at, index) => mapRow(path, at, fields, { dataset, split, index }));
}
