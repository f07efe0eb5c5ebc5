/**
 * Request bodies of the run, evaluation and prediction routes, as valibot values (validation, types and the JSON
 * Schemas at /v1/schema come from the same objects). Selection rules mirror the grid file's.
 */
import * as v from "valibot";
import { Epochs, Fraction, ItemLimit, KeyTokens, Seed } from "../../bounds.ts";
import { PLACEMENTS } from "../../distill/placement.ts";
import { SELECTIONS } from "../../distill/selection.ts";
import { ATTRIBUTIONS } from "../../distill/train.ts";
import { RationaleChoiceSchema, TrainingOptionsSchema } from "../../experiment/grid.ts";
import { ChoiceSchema, DatasetName, SplitName } from "../schemas.ts";

const RunName = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$/, "name: letters, digits, '.', '_' or '-' (at most 80)"));
/** A run id, a run name or a run folder under the runs root: looked up in the run index (unknown → 404). */
const RunRef = v.pipe(v.string(), v.minLength(1), v.maxLength(1_000));

export const RunRequestSchema = v.pipe(
  v.strictObject({
    name: v.optional(RunName),
    dataset: DatasetName,
    /** A from-scratch size (scratch-micro, scratch-tiny …), a model folder in the models root, or a hub id in the HF cache. */
    model: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000)), "scratch-micro"),
    placement: v.picklist(PLACEMENTS, `placement must be one of: ${PLACEMENTS.join(", ")}`),
    selection: v.optional(v.picklist(SELECTIONS, `selection must be one of: ${SELECTIONS.join(", ")}`), "full"),
    k: v.optional(KeyTokens),
    p: v.optional(Fraction),
    /** Scorer of selection "key": idf (default) or saliency of the student in attributionModel. */
    attribution: v.optional(v.picklist(ATTRIBUTIONS, `attribution must be one of: ${ATTRIBUTIONS.join(", ")}`)),
    attributionModel: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000))),
    /** rationales: a teacher in the store, "palm" (default) or a JSON-lines file in the data root; and how they are chosen. */
    ...RationaleChoiceSchema.entries,
    seed: v.optional(Seed, 0),
    epochs: v.optional(Epochs, 1),
    limit: v.optional(ItemLimit),
    training: v.optional(TrainingOptionsSchema, {}),
  }),
  v.forward(v.check((r) => r.selection !== "key" || r.k !== undefined, 'selection "key" needs k'), ["k"]),
  v.forward(v.check((r) => r.selection !== "masked" || r.p !== undefined, 'selection "masked" needs p'), ["p"]),
);
export type RunRequest = v.InferOutput<typeof RunRequestSchema>;

export const EvaluateRequestSchema = v.pipe(
  v.strictObject({
    run: v.optional(RunRef),
    /** A model folder in the models root or a hub id in the HF cache, instead of a run. */
    modelDir: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(1_000))),
    dataset: DatasetName,
    split: v.optional(SplitName, "test"),
    limit: v.optional(ItemLimit),
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
