/** Evaluation's public face: what the CLI, the HTTP worker and the experiment runner call. */
export { accuracyOf, evaluate, predict, predictItems, type EvalOptions, type EvalResult, type Prediction, type PredictResult } from "./evaluate.ts";
export { loadStudent, type Student } from "./student.ts";
