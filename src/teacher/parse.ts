/**
 * Teacher completion → rationale + label, as real models write their answers (not only the PaLM few-shot phrasing):
 *
 *   - the final answer in the common forms: "So the answer is (b)", "Answer: B", "**Answer:** (B) sea",
 *     "the correct choice is B) sea", the choice's text ("the answer is sea"), `\boxed{42}`, "#### 42", a bare
 *     number, "Yes." / "No," for yes/no questions, a short phrase for free-form questions;
 *   - label-first answers ("The answer is (b) because gulls …", "Answer: B\n\nExplanation: …"): the rationale is
 *     what follows the answer;
 *   - the rationale is the text before the answer with trailing connectives ("Therefore,", "so") trimmed and
 *     markdown (bold, headings, bullets, "Reasoning:" labels) stripped; the caller keeps the raw text;
 *   - `<think>…</think>` blocks (and an API's `reasoning_content`) are the reasoning, kept apart from the
 *     visible explanation;
 *   - an answer that names two different labels is a failure ("ambiguous"), never a guess. So are an empty answer,
 *     a refusal, an answer with no readable label, and an answer with neither explanation nor reasoning.
 *
 * Structured answers (`response_format: json_schema`, {rationale, answer}) are validated with valibot and read with
 * the same label rules; text that is not such JSON (a server that ignored the schema) goes through the text parser.
 */
import * as v from "valibot";
import { evaluateArithmetic } from "../data/arithmetic.ts";
import { formatNumber } from "../data/svamp.ts";
import type { AnswerKind } from "../data/registry.ts";
import type { Choice } from "../data/types.ts";
import type { AnswerFormat } from "./prompts.ts";

/** Why an answer was refused as a rationale (recorded as the failure's kind). */
export type ParseFailureReason = "empty" | "refusal" | "no_answer" | "ambiguous" | "no_rationale";
export const PARSE_FAILURE_REASONS: readonly ParseFailureReason[] = ["empty", "refusal", "no_answer", "ambiguous", "no_rationale"];

export interface ParsedCompletion {
  /** The visible explanation, markdown stripped ("" when the answer is only a label, e.g. after a <think> block). */
  rationale: string;
  /** The reasoning trace: `reasoning_content` and/or `<think>` blocks; null when the model wrote none. */
  reasoning: string | null;
  /** "A".."E" for multiple choice, a canonical number for math, "yes"/"no", the short answer's text; null on failure. */
  label: string | null;
  /** Set when the answer must not be stored as a rationale. */
  failure: { reason: ParseFailureReason; detail: string } | null;
}

/** What the API returned besides the content: a reasoning model's trace, a structured-output refusal. */
export interface CompletionExtras {
  reasoning?: string | null;
  refusal?: string | null;
  /** The content was asked for as {rationale, answer} JSON (response_format: json_schema). */
  structured?: boolean;
}

// ---------------------------------------------------------------------------------------------------------------
// text clean-up

const CONNECTIVE =
  /(?:^|[\s,;:.—–-]+)(?:and\s+|which\s+|this\s+|that\s+)?(?:so|thus|therefore|hence|consequently|accordingly|in\s+conclusion|in\s+summary|to\s+conclude|to\s+sum\s+up|overall|finally|ultimately|means|as\s+a\s+result|in\s+short|that\s+is\s+why|this\s+is\s+why|which\s+is\s+why|for\s+this\s+reason)\s*[,:]?\s*$/i;

/** "Gulls live near water. Therefore," → "Gulls live near water."; "Gulls are seabirds, so" → "Gulls are seabirds." */
function trimTrailingConnectives(text: string): string {
  let out = text.trimEnd();
  for (let before = ""; before !== out; ) {
    before = out;
    out = out.replace(CONNECTIVE, "").trimEnd();
  }
  return out.replace(/[\s,;:—–-]+$/, "").replace(/([^.!?。])$/, "$1.").replace(/^\.$/, "");
}

const SECTION_LABEL = /^(?:reasoning|explanation|rationale|justification|thought\s+process|analysis|solution|step[-\s]by[-\s]step(?:\s+reasoning)?|let'?s\s+think(?:\s+step\s+by\s+step)?)\s*[:.\-—]\s*/i;

/** Markdown off, one paragraph: bold/italics, headings, bullets, code, links and section labels removed. */
export function stripMarkdown(text: string): string {
  const lines = text
    .replace(/```[a-z]*\n?/gi, "")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/`([^`]*)`/g, "$1")
    .replace(/\*\*([^*]+?)\*\*/g, "$1")
    .replace(/__([^_]+?)__/g, "$1")
    .replace(/(^|[^\w*])\*(?=\S)([^*\n]*?\S)\*(?!\w)/g, "$1$2")
    .split("\n")
    .map((line) =>
      line
        .replace(/^\s*>+\s?/, "")
        .replace(/^\s*#{1,6}\s*/, "")
        .replace(/^\s*(?:[-*+•]|\d{1,2}[.)])\s+/, "")
        .replace(/^\s*(?:-{3,}|\*{3,}|_{3,})\s*$/, "")
        .trim(),
    )
    .map((line) => line.replace(SECTION_LABEL, ""))
    .filter((line) => line !== "" && !/^(?:reasoning|explanation|rationale|analysis|solution)$/i.test(line));
  return lines.join(" ").replace(/\s+/g, " ").trim();
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** `<think>` blocks out of the visible text (also one whose opening tag the server already stripped). */
export function splitThinking(content: string): { visible: string; thoughts: string } {
  const thoughts: string[] = [];
  let visible = content.replace(/<(think|thinking|reasoning)>([\s\S]*?)<\/\1>/gi, (_m, _tag, inner: string) => {
    thoughts.push(inner.trim());
    return "\n";
  });
  const open = /<(think|thinking|reasoning)>/i.exec(visible);
  if (open) {
    // an unclosed block (cut off, or the model never closed it): all of it is reasoning
    thoughts.push(visible.slice(open.index + open[0].length).trim());
    visible = visible.slice(0, open.index);
  }
  const close = /<\/(think|thinking|reasoning)>/i.exec(visible);
  if (close) {
    // "…reasoning</think>answer": the template put the opening tag in the prompt
    thoughts.unshift(visible.slice(0, close.index).trim());
    visible = visible.slice(close.index + close[0].length);
  }
  return { visible, thoughts: thoughts.filter(Boolean).join("\n\n") };
}

// ---------------------------------------------------------------------------------------------------------------
// reading a label out of the answer's words

function normaliseText(text: string): string {
  return text.normalize("NFKC").trim().toLowerCase().replace(/\s+/g, " ");
}

/** SQuAD-style answer normalisation: lower case, no punctuation, no articles, single spaces. */
export function normaliseShortAnswer(text: string): string {
  return text
    .normalize("NFKC")
    .toLowerCase()
    .replace(/[\p{P}\p{S}]/gu, " ")
    .replace(/\b(a|an|the)\b/g, " ")
    .replace(/\s+/g, " ")
    .trim();
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

const SPAN_CLEAN = /[*_`"“”‘’]/g;

function readChoice(span: string, choices: Choice[]): string[] {
  const labels = choices.map((c) => c.label.toUpperCase());
  const known = (l: string) => labels.length === 0 || labels.includes(l.toUpperCase());
  const text = span.replace(SPAN_CLEAN, "").trim();
  const parenthesised = [...text.matchAll(/[([]([a-z])[)\]]/gi)].map((m) => m[1].toUpperCase()).filter(known);
  if (parenthesised.length > 0) return [...new Set(parenthesised)];
  const lead = /^(?:option\s+|choice\s+|letter\s+)?([a-z])(?=$|[).\]:,;!?]|\s+(.*))/i.exec(text);
  if (lead && known(lead[1])) {
    const letter = lead[1].toUpperCase();
    const rest = (lead[2] ?? "").trim();
    const choiceText = choices.find((c) => c.label.toUpperCase() === letter)?.text;
    const restIsChoice = choiceText !== undefined && normaliseText(rest).startsWith(normaliseText(choiceText));
    const article = lead[1] === "a" || (letter === "A" && /^[a-z]/.test(rest)) || lead[1] === "i";
    if (rest === "" || restIsChoice || /^(?:because|since|as|or|and|[-—–(])/i.test(rest) || (!article && /^[A-Z]$/.test(lead[1]))) {
      const more = [...rest.matchAll(/\b(?:or|and)\s+\(?([A-Z])\b\)?/g)].map((m) => m[1]).filter(known);
      return [...new Set([letter, ...more])];
    }
  }
  // the choice's own words: "the answer is sea", "Blotter."
  const said = normaliseText(text.replace(/[.!?,;:]+$/, "")).replace(/^(?:the|a|an)\s+/, "");
  const exact = choices.filter((c) => normaliseText(c.text) === said);
  if (exact.length === 1) return [exact[0].label.toUpperCase()];
  // "sea, where gulls feed" — the answer's words begin with a choice (only there: "the one that is near the sea"
  // is a description, not an answer); of "sea" and "sea shore" the longer one is meant
  const leading = choices
    .filter((c) => new RegExp(`^${escapeRegExp(normaliseText(c.text))}(?:$|[^\\p{L}\\p{N}])`, "u").test(said))
    .sort((a, b) => b.text.length - a.text.length);
  return leading.length > 0 ? [leading[0].label.toUpperCase()] : [];
}

function readNumbers(span: string): string[] {
  const text = span.replace(SPAN_CLEAN, "").replace(/\\[a-z]+\{([^{}]*)\}/gi, "$1").replace(/\$/g, "").trim();
  const afterEquals = text.includes("=") ? text.slice(text.lastIndexOf("=") + 1) : text;
  const whole = evaluateArithmetic(afterEquals.replace(/[.\s]+$/, "").replace(/(\d),(?=\d{3}\b)/g, "$1"));
  if (whole !== null) return [formatNumber(whole)];
  const numbers = [...afterEquals.matchAll(/-?\d[\d,]*(?:\.\d+)?|-?\.\d+/g)]
    .map((m) => Number(m[0].replace(/,/g, "")))
    .filter(Number.isFinite)
    .map(formatNumber);
  if (numbers.length === 0) return [];
  // "5 or 6" names two answers; "8 apples (3 + 5)" names one
  return /\bor\b/i.test(afterEquals) && new Set(numbers).size > 1 ? [...new Set(numbers)] : [numbers[0]];
}

function readYesNo(span: string): string[] {
  const text = span.replace(SPAN_CLEAN, "").trim().toLowerCase();
  const lead = /^\W*(yes|no|true|false)\b/.exec(text);
  if (!lead) return [];
  const said = lead[1] === "yes" || lead[1] === "true" ? "yes" : "no";
  if (/^\W*(?:yes|no)\s+or\s+(?:yes|no)\b/.test(text)) return ["yes", "no"];
  return [said];
}

function readShort(span: string): string[] {
  const text = span.replace(SPAN_CLEAN, "").replace(/\\boxed\{([^{}]*)\}/g, "$1").replace(/[.!;:,]+$/, "").trim();
  if (text === "") return [];
  const either = /^either\s+(.+?)\s+or\s+(.+)$/i.exec(text);
  if (either) return [either[1], either[2]];
  return [text];
}

function readLabels(span: string, format: AnswerFormat, choices: Choice[]): string[] {
  if (format === "multiple-choice") return readChoice(span, choices);
  if (format === "math") return readNumbers(span);
  if (format === "yes-no") return readYesNo(span);
  return readShort(span);
}

// ---------------------------------------------------------------------------------------------------------------
// finding where the answer is stated

interface Candidate {
  /** Where the answer statement starts (its phrase included) and where its answer words end. */
  start: number;
  end: number;
  labels: string[];
}

/** The answer's words after a marker (on its line or, after "Answer:" alone, the next): up to the end of the line
 * or sentence, or a "because". `end` includes the sentence's closing punctuation. */
function spanAfter(text: string, from: number, format: AnswerFormat): { span: string; end: number } {
  const start = from + (/^\s*/.exec(text.slice(from))?.[0].length ?? 0);
  const rest = text.slice(start);
  const stops = [/\n/, /[.!?](?=\s|$)(?<!\d\.(?=\d))/, /,?\s+(?:because|since|as|given that|due to|which)\b/i, /;\s/, /\s[—–]\s/];
  if (format === "short-answer" || format === "yes-no") stops.push(/,\s/);
  let cut = rest.length;
  for (const stop of stops) {
    const m = stop.exec(rest);
    if (m && m.index < cut) cut = m.index;
  }
  const trail = /^[.!?]/.test(rest.slice(cut)) ? 1 : 0;
  return { span: rest.slice(0, cut), end: start + cut + trail };
}

const ANSWER_PHRASE =
  /\b(?:the\s+)?(?:(?:final|correct|right|best|most\s+(?:likely|appropriate|reasonable))\s+)?(?:answer|choice|option)(?:\s+(?:to\s+(?:the|this)\s+question|here))?\s+(?:is|would\s+be|will\s+be)(?!\s+not\b)(?:\s+(?:likely|probably|clearly|therefore|thus|definitely))?[\s:]*/gi;
const ANSWER_LABEL = /(?:(?:^|(?<=\n))[ \t>#]*[*_]*[ \t]*|[*_]+|\bthe[ \t]+)?\b(?:(?:final|correct|short|my|best)[ \t]+)?answer[ \t*_]*(?::|：)[ \t*_]*|(?:^|\n)[ \t>#*_]*(?:final[ \t]+)?answer[ \t*_]*[ \t]-[ \t*_]*|(?:^|\n)[ \t]*#{1,6}[ \t]*(?:final[ \t]+)?answer[ \t:*]*\n\s*/gi;
const BOXED = /(?:\$\$?|\\\[|\\\()?\s*\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}\s*(?:\$\$?|\\\]|\\\))?/g;
const GSM_FINAL = /(?:^|\n)\s*####\s*([^\n]+)/g;

/** "I would choose (B)", "I'd go with B", "my pick is B". */
const CHOOSER = /\bI(?:'d|\s+would|\s+will|'ll)?\s+(?:choose|pick|select|go\s+with|say)\s+|\bmy\s+(?:pick|choice)\s+is\s+/gi;
/** "(B) is correct", "B) sea is the right answer", "Option B is the best choice": the label before its verdict. */
const VERDICT =
  /(?:\b(?:option|choice|answer)\s+\(?([A-Z])\)?|[([]([A-Z])[)\]]|\b([A-Z])\))((?:[ \t]+[^\s.,;:*]+){0,4}?)[ \t]*\**[ \t]+is\s+(?:the\s+)?(?:correct|right|best|most\s+(?:likely|appropriate|suitable))\b(?:\s+(?:answer|choice|option))?/gi;

function candidates(text: string, format: AnswerFormat, choices: Choice[]): Candidate[] {
  const found: Candidate[] = [];
  if (format === "multiple-choice") {
    for (const m of text.matchAll(VERDICT)) {
      const letter = (m[1] ?? m[2] ?? m[3]).toUpperCase();
      const between = normaliseText(m[4].replace(SPAN_CLEAN, ""));
      const own = choices.find((c) => c.label.toUpperCase() === letter);
      if (!own || (between !== "" && between !== normaliseText(own.text))) continue;
      found.push({ start: m.index, end: m.index + m[0].length + (/^[.!]/.test(text.slice(m.index + m[0].length)) ? 1 : 0), labels: [letter] });
    }
  }
  for (const re of [ANSWER_PHRASE, ANSWER_LABEL, CHOOSER]) {
    for (const m of text.matchAll(re)) {
      const { span, end } = spanAfter(text, m.index + m[0].length, format);
      found.push({ start: m.index, end, labels: readLabels(span, format, choices) });
    }
  }
  for (const re of [BOXED, GSM_FINAL]) {
    for (const m of text.matchAll(re)) found.push({ start: m.index, end: m.index + m[0].length, labels: readLabels(m[1], format, choices) });
  }
  // a line that is only the answer: "(B)", "**B) sea**", "B.", "Yes.", "42" — first or last line
  const lines = [...text.matchAll(/[^\n]+/g)].filter((m) => m[0].trim() !== "");
  for (const m of lines.length > 0 ? [lines[0], lines[lines.length - 1]] : []) {
    const line = m[0].replace(SPAN_CLEAN, "").trim();
    if (found.some((c) => c.start <= m.index + m[0].length && c.end >= m.index)) continue;
    const only =
      format === "multiple-choice"
        ? isLoneChoice(line, choices)
        : format === "math"
        ? /^[$]?-?[\d,]*\.?\d+\s*\.?$/.test(line)
        : format === "yes-no"
        ? /^(?:yes|no)\b[.!]?$/i.test(line)
        : false;
    if (only) found.push({ start: m.index, end: m.index + m[0].length, labels: readLabels(line, format, choices) });
  }
  // label-first without a phrase: "B) sea. Gulls …", "Yes. Gulls …", "No, because …"
  const head = text.trimStart().replace(SPAN_CLEAN, "");
  const offset = text.length - text.trimStart().length;
  const lead =
    format === "multiple-choice" ? /^[([]?[A-Z][)\]][^\n.]*\.?|^[A-Z]\.(?=\s)/.exec(head) : format === "yes-no" ? /^(?:yes|no)\b[.,!:]?/i.exec(head) : null;
  if (lead && !found.some((c) => c.start <= offset + 1)) {
    const labels = readLabels(lead[0], format, choices);
    if (labels.length > 0) found.push({ start: offset, end: offset + rawLength(text.slice(offset), lead[0].length), labels });
  }
  return found.sort((a, b) => a.start - b.start);
}

/** "(B)", "B.", "B) sea", "(b) sea." — one of the choices' labels, optionally with its own text, and nothing else. */
function isLoneChoice(line: string, choices: Choice[]): boolean {
  const m = /^[([]?([A-Za-z])(?:[)\].:]?|[)\].:]\s+(.+?)\.?)$/.exec(line);
  if (!m) return false;
  const own = choices.find((c) => c.label.toUpperCase() === m[1].toUpperCase());
  if (m[2] === undefined) return own !== undefined || choices.length === 0;
  return own !== undefined && normaliseText(m[2]) === normaliseText(own.text);
}

/** How many raw characters hold `cleanLength` characters once markdown emphasis is removed. */
function rawLength(raw: string, cleanLength: number): number {
  let clean = 0;
  let i = 0;
  for (; i < raw.length && clean < cleanLength; i++) if (!SPAN_CLEAN.test(raw[i])) clean++;
  SPAN_CLEAN.lastIndex = 0;
  while (i < raw.length && /[*_`"”’]/.test(raw[i])) i++;
  return i;
}

const REFUSAL =
  /^\W*(?:i'?m\s+sorry|i\s+am\s+sorry|sorry[,!.]|i\s+apologi[sz]e|unfortunately,?\s+i|as\s+an\s+ai\b|i\s+(?:can(?:no|'|’)?t|cannot|won'?t|will\s+not|am\s+(?:not\s+able|unable)|(?:must|have\s+to)\s+decline)\b|i'?m\s+(?:not\s+able|unable)\s+to)/i;

const LEADING_JOIN = /^[\s,;:.!?)\]—–-]*(?:(?:this\s+is\s+)?because|since|as|given\s+that|due\s+to\s+the\s+fact\s+that)?\s*[,:]?\s*/i;

function failure(reason: ParseFailureReason, detail: string, rationale = "", reasoning: string | null = null): ParsedCompletion {
  return { rationale, reasoning, label: null, failure: { reason, detail } };
}

function describeLabels(labels: string[]): string {
  return labels.map((l) => `"${l}"`).join(" and ");
}

/** The answer of plain text (no JSON): label, explanation, and why it cannot be used when it cannot. */
function parseText(text: string, format: AnswerFormat, choices: Choice[], reasoning: string | null): ParsedCompletion {
  const all = candidates(text, format, choices);
  const labelled = all.filter((c) => c.labels.length > 0);
  if (labelled.length === 0) {
    if (format === "math" || format === "short-answer") {
      // a bare answer with nothing else ("42", "Paris")
      const bare = stripMarkdown(text);
      const labels = format === "math" && /^[$]?-?[\d,.]+\.?$/.test(bare) ? readNumbers(bare) : [];
      if (labels.length === 1) return reasoning ? { rationale: "", reasoning, label: labels[0], failure: null } : failure("no_rationale", "only an answer, no explanation", "", reasoning);
    }
    const visible = stripMarkdown(text);
    if (REFUSAL.test(visible)) return failure("refusal", `the teacher declined: "${visible.slice(0, 80)}"`, visible, reasoning);
    return failure("no_answer", "no readable final answer", visible, reasoning);
  }
  const final = labelled[labelled.length - 1];
  // an early "either (a) or (b)" narrowed down later is not ambiguous; two different single answers are
  const single = labelled.filter((c) => c.labels.length === 1).flatMap((c) => c.labels);
  const named = [...new Set(single.map((l) => (format === "short-answer" ? normaliseShortAnswer(l) : l)))];
  if (final.labels.length > 1) return failure("ambiguous", `the answer names ${describeLabels(final.labels)}`, "", reasoning);
  if (named.length > 1) return failure("ambiguous", `the answers stated disagree: ${describeLabels(named)}`, "", reasoning);
  // the answer as first stated (an earlier "either (a) or (b)" is part of the reasoning)
  const first = labelled.find((c) => c.labels.length === 1)!;
  let rationale = trimTrailingConnectives(stripMarkdown(text.slice(0, first.start)));
  if (rationale === "") {
    // label first: the explanation follows the answer (up to a restated answer, if any)
    const upTo = first !== final ? final.start : text.length;
    const after = stripMarkdown(text.slice(first.end, upTo)).replace(LEADING_JOIN, "");
    rationale = after === "" ? "" : capitalise(trimTrailingConnectives(after));
  }
  if (rationale === "" && !reasoning) return failure("no_rationale", "only an answer, no explanation");
  return { rationale, reasoning, label: final.labels[0], failure: null };
}

// ---------------------------------------------------------------------------------------------------------------
// structured outputs

export const StructuredAnswerSchema = v.object({
  rationale: v.string(),
  answer: v.union([v.string(), v.number(), v.boolean()]),
});

/** The JSON Schema sent as `response_format.json_schema.schema`: {rationale, answer} with the answer typed per format. */
export function structuredSchema(format: AnswerFormat, choices: Choice[] = []): Record<string, unknown> {
  const answer =
    format === "multiple-choice"
      ? { type: "string", enum: choices.length ? choices.map((c) => c.label.toUpperCase()) : ["A", "B", "C", "D", "E"] }
      : format === "math"
      ? { type: "number" }
      : format === "yes-no"
      ? { type: "string", enum: ["yes", "no"] }
      : { type: "string", description: "a few words, no explanation" };
  return {
    type: "object",
    properties: { rationale: { type: "string", description: "step-by-step reasoning that leads to the answer" }, answer },
    required: ["rationale", "answer"],
    additionalProperties: false,
  };
}

function readStructured(content: string): v.InferOutput<typeof StructuredAnswerSchema> | null {
  const body = content.trim().replace(/^```(?:json)?\s*/i, "").replace(/\s*```$/, "");
  if (!body.startsWith("{")) return null;
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return null;
  }
  const parsed = v.safeParse(StructuredAnswerSchema, json);
  return parsed.success ? parsed.output : null;
}

function parseStructured(answer: v.InferOutput<typeof StructuredAnswerSchema>, format: AnswerFormat, choices: Choice[], reasoning: string | null): ParsedCompletion {
  const said = typeof answer.answer === "boolean" ? (answer.answer ? "yes" : "no") : String(answer.answer);
  const labels = readLabels(said, format, choices);
  const rationale = trimTrailingConnectives(stripMarkdown(answer.rationale));
  if (labels.length === 0) return failure("no_answer", `structured answer ${JSON.stringify(said)} is not a valid answer`, rationale, reasoning);
  if (labels.length > 1) return failure("ambiguous", `the answer names ${describeLabels(labels)}`, rationale, reasoning);
  if (rationale === "" && !reasoning) return failure("no_rationale", "only an answer, no explanation");
  return { rationale, reasoning, label: labels[0], failure: null };
}

// ---------------------------------------------------------------------------------------------------------------

/** The teacher's own answer, before it starts inventing the next few-shot question. */
function answeredPart(completion: string): string {
  return completion.split(/\n\s*\nQ:/)[0];
}

export function parseCompletion(
  completion: string,
  format: AnswerFormat,
  choices: Choice[] = [],
  extras: CompletionExtras = {},
): ParsedCompletion {
  const { visible, thoughts } = splitThinking(completion);
  const reasoning = [extras.reasoning?.trim(), thoughts].filter(Boolean).join("\n\n") || null;
  if (extras.refusal?.trim()) return failure("refusal", `the teacher declined: "${extras.refusal.trim().slice(0, 80)}"`, "", reasoning);
  const text = answeredPart(visible);
  if (text.trim() === "") {
    return failure("empty", reasoning ? "reasoning only, no visible answer" : "empty answer", "", reasoning);
  }
  const structured = readStructured(text);
  if (structured) return parseStructured(structured, format, choices, reasoning);
  return parseText(text, format, choices, reasoning);
}

/** A gold answer in the same canonical form as parsed labels ("(b)" / "b" → "B"; "1,000.0" → "1000"; "True" → "yes"). */
export function normaliseGold(answer: string, format: AnswerFormat): string | null {
  if (format === "math") return readNumbers(answer)[0] ?? null;
  if (format === "yes-no") return readYesNo(answer)[0] ?? null;
  if (format === "short-answer") return normaliseShortAnswer(answer) || null;
  const m = /^\(?([a-z])\)?\.?$/i.exec(answer.trim());
  return m ? m[1].toUpperCase() : null;
}

/** Whether the teacher's label matches the gold answer; null when there is no gold answer to compare with. */
export function agreesWithGold(label: string | null, gold: string | undefined, format: AnswerFormat): boolean | null {
  if (gold === undefined || gold.trim() === "") return null;
  const expected = normaliseGold(gold, format);
  if (label === null || expected === null) return false;
  if (format === "math") return Math.abs(Number(label) - Number(expected)) <= 1e-6 * Math.max(1, Math.abs(Number(expected)));
  if (format === "short-answer") return normaliseShortAnswer(label) === expected;
  return label === expected;
}

/**
 * What kind of answer an item wants: told (`format`); multiple choice with choices; the dataset's own kind when known
 * (a "number" dataset is math, a "text" one yes/no or short answer); otherwise guessed from the gold answer's shape
 * (a number: math; yes/no/true/false: yes/no; anything else: short answer); short answer when there is nothing to go by.
 */
export function answerFormatOf(item: { choices?: Choice[]; answer?: string; format?: AnswerFormat }, answerKind?: AnswerKind | null): AnswerFormat {
  if (item.format) return item.format;
  if (item.choices?.length) return "multiple-choice";
  if (answerKind === "number") return "math";
  const gold = item.answer?.trim();
  if (gold && /^(?:yes|no|true|false)$/i.test(gold)) return "yes-no";
  if (answerKind === "text") return "short-answer";
  // a question with nothing to go by (no choices, no dataset, no gold) is asked free-form, not as math
  if (!gold) return "short-answer";
  return readNumbers(gold).length === 1 && /^[-$\d.,\s/()+*]+$/.test(gold) ? "math" : "short-answer";
}
