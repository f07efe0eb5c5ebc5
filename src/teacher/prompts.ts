/**
 * Few-shot chain-of-thought prompts. The exemplars live in JSON files users can read and edit
 * (src/teacher/exemplars/*.json: cqa for multiple choice, svamp for math, strategyqa for yes/no, short-answer for
 * open questions); a job or a request
 * may bring its own file's content instead. A template's version = "<name>@<revision>+<hash of the content>" (plus
 * "+k<N>" when only the first N exemplars are shown, "+explain" when label-conditioned), and the version is part of
 * every cache key, so editing an exemplar file never serves rationales written for the old prompt.
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

export const PROMPT_MODES = ["free", "explain"] as const;
/** free: the teacher answers the question; explain: it is shown the gold answer and asked to explain it (label-conditioned). */
export type PromptMode = (typeof PROMPT_MODES)[number];

/** The shipped exemplar files by name (src/teacher/exemplars/<name>.json). */
export const BUILTIN_TEMPLATES = ["cqa", "svamp", "strategyqa", "short-answer"] as const;
const BUILTIN_FOR: Record<AnswerFormat, (typeof BUILTIN_TEMPLATES)[number]> = {
  "multiple-choice": "cqa",
  math: "svamp",
  "yes-no": "strategyqa",
  "short-answer": "short-answer",
};
/** "free" names the free-form format (a short answer), as users say it. */
const FormatName = v.pipe(
  v.picklist([...ANSWER_FORMATS, "free"], `format must be one of: ${ANSWER_FORMATS.join(", ")} (or free = short-answer)`),
  v.transform((f): AnswerFormat => (f === "free" ? "short-answer" : f)),
);

/** How a prompt is built, per job or per request: the one definition the CLI, HTTP bodies and job params share. */
export const PromptOptionsSchema = v.strictObject({
  /** A shipped template by name (cqa, svamp, free), or the content of an exemplar file (an object of its form). */
  template: v.optional(v.union([v.picklist(BUILTIN_TEMPLATES, `template must be one of ${BUILTIN_TEMPLATES.join(", ")} or an exemplar file's content`), ExemplarFileSchema])),
  /** The answer format, when the item does not tell (an item with choices is multiple-choice; without: free). */
  format: v.optional(FormatName),
  /** Exemplars shown (default: all the file has); 0 = zero-shot. */
  shots: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(64))),
  mode: v.optional(v.picklist(PROMPT_MODES, `mode must be one of: ${PROMPT_MODES.join(", ")}`)),
});
export type PromptOptions = v.InferOutput<typeof PromptOptionsSchema>;

export interface PromptItem {
  question: string;
  choices?: Choice[];
  /** The gold answer: shown to the teacher in "explain" mode. */
  answer?: string;
}

export interface PromptTemplate {
  /** e.g. "cqa-cot@1+3f2a9c1d" ("…+k0", "…+explain" for zero-shot and label-conditioned) — part of the cache key. */
  version: string;
  format: AnswerFormat;
  mode: PromptMode;
  /** The few-shot prompt ending in "A:", for the teacher to continue. */
  render(item: PromptItem): string;
}

/** Where generation should stop: the teacher starting the next few-shot question. */
export const STOP_SEQUENCES = ["\n\nQ:"];

/** What a zero-shot prompt says (a few-shot one shows it instead). */
const INSTRUCTION: Record<AnswerFormat, string> = {
  "multiple-choice": 'Answer the multiple-choice question. Reason step by step, then end with "So the answer is (x)." where x is the letter of your choice.',
  math: 'Solve the math word problem. Reason step by step, then end with "So the answer is N." where N is the number.',
  "yes-no": 'Answer the question with yes or no. Reason step by step, then end with "So the answer is yes." or "So the answer is no."',
  "short-answer": 'Answer the question. Reason step by step, then end with "So the answer is <answer>." with a short answer.',
};
const EXPLAIN_INSTRUCTION = "Each question comes with its correct answer: explain step by step why it is correct.";

function renderChoices(choices: Choice[]): string {
  return "Answer Choices: " + choices.map((c) => `(${c.label.toLowerCase()}) ${c.text}`).join(" ");
}

function renderAnswer(format: AnswerFormat, answer: string): string {
  return format === "multiple-choice" ? `(${answer.toLowerCase()})` : answer;
}

function renderQuestion(item: PromptItem, format: AnswerFormat, mode: PromptMode): string {
  const choices = item.choices?.length ? `\n${renderChoices(item.choices)}` : "";
  if (mode === "explain" && (item.answer === undefined || item.answer.trim() === "")) {
    throw new UserError("label-conditioned prompts (mode explain) need the item's gold answer", 422);
  }
  const given = mode === "explain" ? `\nThe correct answer is ${renderAnswer(format, item.answer!)}. Explain why.` : "";
  return `Q: ${item.question.trim()}${choices}${given}\nA:`;
}

/** A template from a parsed exemplar file; `hash` names its content (the file's bytes or the object's JSON). */
export function templateFromFile(file: ExemplarFile, hash: string, options: Pick<PromptOptions, "shots" | "mode"> = {}): PromptTemplate {
  const mode = options.mode ?? "free";
  const shown = file.exemplars.slice(0, options.shots ?? file.exemplars.length);
  const shots = shown
    .map((e) => `${renderQuestion(e, file.format, mode)} ${e.rationale.trim()} So the answer is ${renderAnswer(file.format, e.answer)}.`)
    .join("\n\n");
  const preamble = [file.preamble?.trim() || (shown.length === 0 ? INSTRUCTION[file.format] : ""), mode === "explain" ? EXPLAIN_INSTRUCTION : ""]
    .filter(Boolean)
    .join(" ");
  const head = [preamble, shots].filter(Boolean).join("\n\n");
  const variant = `${shown.length < file.exemplars.length ? `+k${shown.length}` : ""}${mode === "explain" ? "+explain" : ""}`;
  return {
    version: `${file.name}@${file.revision}+${hash}${variant}`,
    format: file.format,
    mode,
    render: (item) => `${head}\n\n${renderQuestion(item, file.format, mode)}`.trimStart(),
  };
}

function parseExemplarFile(json: unknown, origin: string): ExemplarFile {
  const parsed = v.safeParse(ExemplarFileSchema, json);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    throw new UserError(`exemplar file ${origin}: ${v.getDotPath(issue) ?? "(root)"}: ${issue.message}`, 422);
  }
  return parsed.output;
}

const hash8 = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 8);

/** A template from the text of an exemplar file; `origin` names the file in error messages. */
export function templateFromText(text: string, origin: string, options: Pick<PromptOptions, "shots" | "mode"> = {}): PromptTemplate {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UserError(`exemplar file ${origin}: not JSON (${(err as Error).message})`, 422);
  }
  return templateFromFile(parseExemplarFile(json, origin), hash8(text), options);
}

export function readExemplarFile(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    throw new UserError(`exemplar file not found: ${path}`, 404);
  }
}

export function loadTemplate(path: string, options: Pick<PromptOptions, "shots" | "mode"> = {}): PromptTemplate {
  return templateFromText(readExemplarFile(path), path, options);
}

/** Reads an exemplar file into the object form job params and request bodies carry (validated). */
export function exemplarFileContent(path: string): ExemplarFile {
  const text = readExemplarFile(path);
  try {
    return parseExemplarFile(JSON.parse(text), path);
  } catch (err) {
    if (err instanceof SyntaxError) throw new UserError(`exemplar file ${path}: not JSON (${err.message})`, 422);
    throw err;
  }
}

const EXEMPLAR_DIR = join(import.meta.dir, "exemplars");
const builtinTexts = new Map<string, string>();

function builtinText(name: (typeof BUILTIN_TEMPLATES)[number]): string {
  let text = builtinTexts.get(name);
  if (text === undefined) {
    text = readExemplarFile(join(EXEMPLAR_DIR, `${name}.json`));
    builtinTexts.set(name, text);
  }
  return text;
}

/** The shipped template for a format (files read once per process). */
export function builtinTemplate(format: AnswerFormat, options: Pick<PromptOptions, "shots" | "mode"> = {}): PromptTemplate {
  const name = BUILTIN_FOR[format];
  return templateFromText(builtinText(name), `${name}.json`, options);
}

/** JSON with sorted keys: an inline exemplar object hashes the same however its keys were ordered. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]])) : x,
  );
}

/**
 * The template for an item: the one `options.template` names (a shipped one, or an exemplar file's content), else
 * the shipped one of the format — `options.format`, or the item's own (answerFormatOf: its choices, its dataset's
 * kind, its gold answer; a question with none of those is free-form, a short answer).
 */
export function templateFor(item: PromptItem & { format?: AnswerFormat }, options: PromptOptions = {}, answerKind?: AnswerKind | null): PromptTemplate {
  const variant = { shots: options.shots, mode: options.mode };
  let template: PromptTemplate;
  if (typeof options.template === "string") template = templateFromText(builtinText(options.template), `${options.template}.json`, variant);
  else if (options.template) template = templateFromFile(options.template, hash8(canonical(options.template)), variant);
  else template = builtinTemplate(options.format ?? answerFormatOf(item, answerKind), variant);
  if (options.format && options.format !== template.format) {
    throw new UserError(`template ${template.version} is for format ${template.format}, not ${options.format}`, 422);
  }
  if (template.format === "multiple-choice" && !item.choices?.length) {
    throw new UserError(`template ${template.version} is multiple-choice, but the question has no choices`, 422);
  }
  return template;
}
