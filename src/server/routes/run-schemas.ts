/**
 * Request bodies of the run, evaluation and prediction routes, as valibot values (validation, types and the JSON
 * Schemas at /v1/schema come from the same objects). Selection rules mirror the grid file's.
 */
import * as v from "valibot";
import { ItemLimit } from "../../bounds.ts";
import { type RunSpec, RunSpecSchema } from "../../distill/run-spec.ts";
import { ChoiceSchema, DatasetName, SplitName } from "../schemas.ts";
import { SamplingSchema } from "../../eval/sampling.ts";

/** A run id, a run name or a run folder under the runs root: looked up in the run index (unknown → 404). */
const RunRef = v.pipe(v.string(), v.minLength(1), v.maxLength(1_000));

/** POST /v1/runs: the body is a run spec, the one definition of a run's settings (src/distill/run-spec.ts). */
export const RunRequestSchema = RunSpecSchema;
export type RunRequest = RunSpec;

export const EvaluateRequestSchema = v.pipe(
  v.strictObject({
    run: v.optional(RunRef),
    /** A model folder in the models root or a hub id in the HF cache, instead of a run. */
    modelDir: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000))),
    dataset: DatasetName,
    split: v.optional(SplitName, "test"),
    limit: v.optional(ItemLimit),
    /** Generation: greedy by default; temperature, top_p and seed as in src/eval/sampling.ts. */
    ...SamplingSchema.entries,
  }),
  v.check((r) => (r.run === undefined) !== (r.modelDir === undefined), 'give exactly one of "run" or "modelDir"'),
);
export type EvaluateRequest = v.InferOutput<typeof EvaluateRequestSchema>;

export const PredictRequestSchema = v.strictObject({
  run: RunRef,
  question: v.pipe(v.string(), v.trim(), v.minLength(1, "question must not be empty"), v.maxLength(10_000)),
  choices: v.optional(v.pipe(v.array(ChoiceSchema), v.minLength(2), v.maxLength(10))),
  ...SamplingSchema.entries,
});
export type PredictRequest = v.InferOutput<typeof PredictRequestSchema>;

/** Served at /v1/schema beside the teacher routes' bodies (merged in src/server/app.ts). */
export const runRequestSchemas = {
  RunRequest: RunRequestSchema,
  RunSpec: RunSpecSchema,
  EvaluateRequest: EvaluateRequestSchema,
  PredictRequest: PredictRequestSchema,
} as const;
