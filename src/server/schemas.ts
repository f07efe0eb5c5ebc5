/**
 * Every HTTP request body and query as a valibot schema: the one source for validation (src/server/validate.ts),
 * TypeScript types (`v.InferOutput`) and the JSON Schemas served at /v1/schema. Later route modules add theirs to
 * `requestSchemas`.
 */
import * as v from "valibot";
import { PromptOptionsSchema } from "../teacher/prompts.ts";
import { ItemLimit } from "../bounds.ts";

/** Dataset names are folder names under datasets/: no separators, no dots first, so "../x" never reaches the disk. */
export const DatasetName = v.pipe(
  v.string(),
  v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "dataset must be a plain name: lower-case letters, digits, _ or -"),
);

/** Which splits exist is the registry's business (unknown → 404); here only the shape is checked. */
export const SplitName = v.pipe(
  v.string(),
  v.regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, "split must be a plain name such as train, test or dev"),
);

export const ModelName = v.pipe(v.string(), v.minLength(1), v.maxLength(200));

const Temperature = v.pipe(v.number(), v.minValue(0), v.maxValue(2));
const SampleCount = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(16));
const MaxTokens = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(32_768));

export const ChoiceSchema = v.object({
  label: v.pipe(v.string(), v.regex(/^[A-Za-z]$/, "a choice label is one letter")),
  text: v.pipe(v.string(), v.minLength(1), v.maxLength(1_000)),
});

/** Shared generation parameters of one-off requests and bulk jobs. */
const generation = {
  model: v.optional(ModelName),
  temperature: v.optional(Temperature),
  n: v.optional(SampleCount),
  maxTokens: v.optional(MaxTokens),
  /** Ask for {rationale, answer} JSON (response_format: json_schema); part of the cache key. */
  structured: v.optional(v.boolean()),
};

const ChoiceText = v.pipe(v.string(), v.minLength(1), v.maxLength(1_000));

/**
 * Choices as plain strings (labelled A, B, … in order) or as {label, text}; the answer as a label or a choice's text.
 * Both come out as {label, text} choices and a label answer.
 */
export const RationaleRequestSchema = v.pipe(
  v.strictObject({
    question: v.pipe(v.string(), v.trim(), v.minLength(1, "question must not be empty"), v.maxLength(10_000)),
    choices: v.optional(v.pipe(v.array(v.union([ChoiceText, ChoiceSchema], "a choice is a string or {label, text}")), v.minLength(2), v.maxLength(10))),
    answer: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000))),
    dataset: v.optional(DatasetName),
    split: v.optional(SplitName),
    id: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(200))),
    ...generation,
    ...PromptOptionsSchema.entries,
  }),
  v.transform(({ choices, ...rest }) => ({
    ...rest,
    choices: choices?.map((c, i) => (typeof c === "string" ? { label: String.fromCharCode(65 + i), text: c } : { ...c, label: c.label.toUpperCase() })),
  })),
  v.transform(({ answer, ...rest }) => {
    const byText = rest.choices?.find((c) => c.text.trim().toLowerCase() === answer?.trim().toLowerCase());
    const isLabel = rest.choices?.some((c) => c.label === answer?.trim().toUpperCase());
    return { ...rest, answer: answer === undefined || !rest.choices ? answer : isLabel ? answer.trim().toUpperCase() : (byText?.label ?? answer) };
  }),
  v.forward(
    v.check((r) => r.answer === undefined || !r.choices || r.choices.some((c) => c.label === r.answer), "answer must be a choice's label or its text"),
    ["answer"],
  ),
);
export type RationaleRequestBody = v.InferOutput<typeof RationaleRequestSchema>;

/** GET /v1/rationales query string. */
export const RationaleListQuerySchema = v.object({
  dataset: DatasetName,
  split: SplitName,
  model: v.optional(ModelName),
});
export type RationaleListQuery = v.InferOutput<typeof RationaleListQuerySchema>;

const PageNumber = (max: number, fallback: number) =>
  v.optional(v.pipe(v.string(), v.regex(/^\d+$/, "a whole number"), v.transform(Number), v.maxValue(max)), String(fallback));

/** GET /v1/rationales/browse query string: the dashboard's rationale browser. */
export const RationaleBrowseQuerySchema = v.object({
  dataset: v.optional(DatasetName),
  teacher: v.optional(ModelName),
  agrees: v.optional(v.picklist(["true", "false", "unknown"], "agrees must be true, false or unknown")),
  limit: PageNumber(500, 50),
  offset: PageNumber(1_000_000_000, 0),
});
export type RationaleBrowseQuery = v.InferOutput<typeof RationaleBrowseQuerySchema>;
/** GET /v1/rationales/failures query string: every field narrows the listing. */
export const FailureListQuerySchema = v.object({
  dataset: v.optional(DatasetName),
  split: v.optional(SplitName),
  model: v.optional(ModelName),
  kind: v.optional(v.pipe(v.string(), v.regex(/^[a-z_]{1,40}$/, "kind is a failure kind such as no_answer or truncated"))),
});
export type FailureListQuery = v.InferOutput<typeof FailureListQuerySchema>;

export const JobRequestSchema = v.strictObject({
  dataset: DatasetName,
  split: SplitName,
  limit: v.optional(ItemLimit),
  concurrency: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(256))),
  /** Use the Batch API (upload, create, poll, download) instead of one request per item. */
  batch: v.optional(v.boolean()),
  /** Stop claiming items once the job has spent this much (USD); resumable with a higher budget. */
  maxCostUsd: v.optional(v.pipe(v.number(), v.gtValue(0))),
  /** Answer with what the job would ask and cost (items, tokens, USD) instead of starting it. */
  dryRun: v.optional(v.boolean()),
  /** Template (a shipped name or an exemplar file's content), format, shots, free or label-conditioned. */
  prompt: v.optional(PromptOptionsSchema),
  ...generation,
});

/** POST /v1/jobs/:id/resume: continue an unfinished job, e.g. one stopped at its budget, with a new budget. */
export const JobResumeSchema = v.strictObject({
  maxCostUsd: v.optional(v.nullable(v.pipe(v.number(), v.gtValue(0)))),
});
export type JobRequestBody = v.InferOutput<typeof JobRequestSchema>;

/** Request schemas by name, served as JSON Schema at /v1/schema/:name. */
export const requestSchemas = {
  RationaleRequest: RationaleRequestSchema,
  RationaleListQuery: RationaleListQuerySchema,
  RationaleBrowseQuery: RationaleBrowseQuerySchema,
  FailureListQuery: FailureListQuerySchema,
  JobRequest: JobRequestSchema,
  JobResume: JobResumeSchema,
} as const;
