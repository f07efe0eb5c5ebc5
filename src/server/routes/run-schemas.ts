/**
 * Request bodies of the run, evaluation and prediction routes, as valibot values (validation, types and the JSON
 * Schemas at /v1/schema come from the same objects). Selection rules mirror the grid file's.
 */
import * as v from "valibot";
import { PLACEMENTS } from "../../distill/placement.ts";
import { SELECTIONS } from "../../distill/selection.ts";
import { ATTRIBUTIONS } from "../../distill/train.ts";
import { RationaleChoiceSchema, TrainingOptionsSchema } from "../../experiment/grid.ts";
import { ChoiceSchema, DatasetName, SplitName } from "../schemas.ts";

const Count = v.pipe(v.number(), v.integer(), v.minValue(1));
const RunName = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$/, "name: letters, digits, '.', '_' or '-' (at most 80)"));
/** A run id, a run name or a run folder: looked up in the run index (unknown → 404). */
const RunRef = v.pipe(v.string(), v.minLength(1), v.maxLength(1_000));

export const RunRequestSchema = v.pipe(
  v.strictObject({
    name: v.optional(RunName),
    dataset: DatasetName,
    /** A from-scratch size (scratch-micro, scratch-tiny …) or a Hugging Face model folder / hub id in the server's HF cache. */
    model: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000)), "scratch-micro"),
    placement: v.picklist(PLACEMENTS, `placement must be one of: ${PLACEMENTS.join(", ")}`),
    selection: v.optional(v.picklist(SELECTIONS, `selection must be one of: ${SELECTIONS.join(", ")}`), "full"),
    k: v.optional(Count),
    p: v.optional(v.pipe(v.number(), v.minValue(0, "p must be in [0, 1]"), v.maxValue(1, "p must be in [0, 1]"))),
    /** Scorer of selection "key": idf (default) or saliency of the student in attributionModel. */
    attribution: v.optional(v.picklist(ATTRIBUTIONS, `attribution must be one of: ${ATTRIBUTIONS.join(", ")}`)),
    attributionModel: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000))),
    ...RationaleChoiceSchema.entries,
    seed: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 0),
    epochs: v.optional(v.pipe(v.number(), v.gtValue(0)), 1),
    limit: v.optional(Count),
    training: v.optional(TrainingOptionsSchema, {}),
  }),
  v.forward(v.check((r) => r.selection !== "key" || r.k !== undefined, 'selection "key" needs k'), ["k"]),
  v.forward(v.check((r) => r.selection !== "masked" || r.p !== undefined, 'selection "masked" needs p'), ["p"]),
);
export type RunRequest = v.InferOutput<typeof RunRequestSchema>;

export const EvaluateRequestSchema = v.pipe(
  v.strictObject({
    run: v.optional(RunRef),
    /** A Hugging Face model folder on the server, instead of a run. */
    modelDir: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000))),
    dataset: DatasetName,
    split: v.optional(SplitName, "test"),
    limit: v.optional(Count),
  }),
  v.check((r) => (r.run === undefined) !== (r.modelDir === undefined), 'give exactly one of "run" or "modelDir"'),
);
export type EvaluateRequest = v.InferOutput<typeof EvaluateRequestSchema>;

export const PredictRequestSchema = v.strictObject({
  run: RunRef,
  question: v.pipe(v.string(), v.trim(), v.minLength(1, "question must not be empty"), v.maxLength(10_000)),
  choices: v.optional(v.pipe(v.array(ChoiceSchema), v.minLength(2), v.maxLength(10))),
});
export type PredictRequest = v.InferOutput<typeof PredictRequestSchema>;

/** Served at /v1/schema beside the teacher routes' bodies (merged in src/server/app.ts). */
export const runRequestSchemas = {
  RunRequest: RunRequestSchema,
  EvaluateRequest: EvaluateRequestSchema,
  PredictRequest: PredictRequestSchema,
} as const;
