/**
 * The ranges every client-given number must lie in, as valibot schemas: one definition used by the HTTP bodies,
 * grid files and (through them) the run settings, so a request can never ask for unbounded work — `epochs: 1e300`,
 * `limit: 1e12` or a seed that no generator takes is a 400 with the field named, before anything starts.
 *
 * The limits are generous for real use (a day of training on a big GPU stays far inside them); they exist to keep
 * a typo or a hostile client from holding a process forever.
 */
import * as v from "valibot";

const int = (min: number, max: number, what: string) =>
  v.pipe(v.number(), v.integer(`${what} must be an integer`), v.minValue(min, `${what} must be >= ${min}`), v.maxValue(max, `${what} must be <= ${max}`));
const real = (min: number, max: number, what: string, exclusiveMin = false) =>
  v.pipe(
    v.number(),
    exclusiveMin ? v.gtValue(min, `${what} must be > ${min}`) : v.minValue(min, `${what} must be >= ${min}`),
    v.maxValue(max, `${what} must be <= ${max}`),
  );

export const MAX_EPOCHS = 1_000;
/** Optimiser steps one run may take (epochs × examples / batch size), checked once the examples are known. */
export const MAX_STEPS = 1_000_000;
export const MAX_ITEMS = 1_000_000;

export const Epochs = real(0, MAX_EPOCHS, "epochs", true);
/** Seeds are 32-bit (the generators take uint32). */
export const Seed = int(0, 2 ** 32 - 1, "seed");
/** A number of dataset items to use (the first N). */
export const ItemLimit = int(1, MAX_ITEMS, "limit");
export const KeyTokens = int(1, 100_000, "k");
export const BatchSize = int(1, 4_096, "batchSize");
export const LearningRate = real(0, 10, "lr", true);
export const Alpha = real(0, 100, "alpha");
export const WarmupSteps = int(0, MAX_STEPS, "warmupSteps");
export const WeightDecay = real(0, 10, "weightDecay");
export const GradClip = real(0, 1e6, "gradClip");
/** Longest training sequence, in tokens. */
export const SequenceTokens = int(1, 65_536, "maxSeqLength");
export const CheckpointEvery = int(1, MAX_STEPS, "checkpointEvery");
/** LoRA (src/model/lora.ts): rank, scale numerator, dropout on the adapter input. */
export const LoraRank = int(1, 4_096, "loraRank");
export const LoraAlpha = real(0, 1e6, "loraAlpha", true);
export const LoraDropout = v.pipe(v.number(), v.minValue(0, "loraDropout must be in [0, 1)"), v.ltValue(1, "loraDropout must be in [0, 1)"));
export const Fraction = v.pipe(v.number(), v.minValue(0, "p must be in [0, 1]"), v.maxValue(1, "p must be in [0, 1]"));
