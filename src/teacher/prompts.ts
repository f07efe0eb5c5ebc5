/**
 * Few-shot chain-of-thought prompts. The exemplars live in JSON files users can read and edit
 * (src/teacher/exemplars/*.json); a template's version = "<name>@<revision>+<hash of the file>", and the version is
 * part of every cache key, so editing an exemplar file never serves rationales written for the old prompt.
 *
 * Rendered in the style of Wei et al. (2022) and Distilling Step-by-Step:
 *   Q: <question>
 *   Answer Choices: (a) … (b) …        (multiple choice only)
 *   A: <reasoning> So the answer is (x).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import type { Choice } from "../data/types.ts";
import { UserError } from "../errors.ts";
import type { AnswerKind } from "../data/registry.ts";
import { answerFormatOf } from "./parse.ts";

/** What the teacher is asked to answer: a choice label, a number, yes/no, or a short free-form phrase. */
export const ANSWER_FORMATS = ["multiple-choice", "math", "yes-no", "short-answer"] as const;
export type AnswerFormat = (typeof ANSWER_FORMATS)[number];

const ChoiceSchema = v.object({ label: v.pipe(v.string(), v.regex(/^[A-Z]$/)), text: v.string() });

export const ExemplarFileSchema = v.object({
  name: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]*$/)),
  revision: v.pipe(v.number(), v.integer(), v.minValue(1)),
  format: v.picklist(ANSWER_FORMATS),
  source: v.optional(v.string()),
  /** Text placed before the exemplars (e.g. an instruction for chat models). */
  preamble: v.optional(v.string()),
  exemplars: v.pipe(
    v.array(
      v.object({
        question: v.string(),
        choices: v.optional(v.array(ChoiceSchema)),
        rationale: v.string(),
        answer: v.string(),
      }),
    ),
    v.minLength(1),
  ),
});

export type ExemplarFile = v.InferOutput<typeof ExemplarFileSchema>;

export interface PromptItem {
  question: string;
  choices?: Choice[];
}

export interface PromptTemplate {
  /** e.g. "cqa-cot@1+3f2a9c1d" — part of the cache key. */
  version: string;
  format: AnswerFormat;
  /** The few-shot prompt ending in "A:", for the teacher to continue. */
  render(item: PromptItem): string;
}

/** Where generation should stop: the teacher starting the next few-shot question. */
export const STOP_SEQUENCES = ["\n\nQ:"];

function renderChoices(choices: Choice[]): string {
  return "Answer Choices: " + choices.map((c) => `(${c.label.toLowerCase()}) ${c.text}`).join(" ");
}

function renderQuestion(item: PromptItem): string {
  const choices = item.choices?.length ? `\n${renderChoices(item.choices)}` : "";
  return `Q: ${item.question.trim()}${choices}\nA:`;
}

function renderAnswer(format: AnswerFormat, answer: string): string {
  return format === "multiple-choice" ? `(${answer.toLowerCase()})` : answer;
}

/** A template from the text of an exemplar file; `origin` names the file in error messages. */
export function templateFromText(text: string, origin: string): PromptTemplate {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`exemplar file ${origin}: not JSON (${(err as Error).message})`, 422);
  }
  const parsed = v.safeParse(ExemplarFileSchema, json);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new UserError(`exemplar file ${origin}: ${v.getDotPath(issue) ?? "(root)"}: ${issue.message}`, 422);
  }
  const file = parsed.output;
  const hash = createHash("sha256").update(text).digest("hex").slice(0, 8);
  const shots = file.exemplars
    .map((e) => `${renderQuestion(e)} ${e.rationale.trim()} So the answer is ${renderAnswer(file.format, e.answer)}.`)
    .join("\n\n");
  const head = file.preamble ? `${file.preamble.trim()}\n\n${shots}` : shots;
  return {
    version: `${file.name}@${file.revision}+${hash}`,
    format: file.format,
    render: (item) => `${head}\n\n${renderQuestion(item)}`,
  };
}

export function loadTemplate(path: string): PromptTemplate {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new UserError(`exemplar file not found: ${path}`, 404);
  }
  return templateFromText(text, path);
}

const EXEMPLAR_DIR = join(import.meta.dir, "exemplars");
const EXEMPLAR_FILES: Record<AnswerFormat, string> = {
  "multiple-choice": "cqa.json",
  math: "svamp.json",
  "yes-no": "strategyqa.json",
  "short-answer": "short-answer.json",
};
const builtins = new Map<AnswerFormat, PromptTemplate>();

/** The shipped template for a format (read once per process). */
export function builtinTemplate(format: AnswerFormat): PromptTemplate {
  let template = builtins.get(format);
  if (!template) {
    template = loadTemplate(join(EXEMPLAR_DIR, EXEMPLAR_FILES[format]));
    builtins.set(format, template);
  }
  return template;
}

/** The shipped template for the item's answer format (answerFormatOf: choices, the dataset's kind, the gold answer). */
export function templateFor(item: PromptItem & { answer?: string; format?: AnswerFormat }, answerKind?: AnswerKind | null): PromptTemplate {
  return builtinTemplate(answerFormatOf(item, answerKind));
}
