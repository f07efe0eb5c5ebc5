/**
 * How a student picks each next token: greedy (temperature 0, the default) or sampled from softmax(logits /
 * temperature) cut to the top-p nucleus. One valibot schema defines the settings for the eval CLI's flags, the HTTP
 * bodies of /v1/evaluate and /v1/predict, and the Decoder API.
 *
 * Sampling is deterministic given the seed, and every request row draws from its own stream (seeded from the seed
 * and the row's index in the call), so a row's text does not depend on which rows share its batch, on the batch
 * size, or on whether the key/value cache is used.
 */
import * as v from "valibot";
import { UserError } from "../errors.ts";
import { Rng } from "../model/rng.ts";

export const SamplingSchema = v.strictObject({
  /** 0: greedy (argmax). Otherwise logits are divided by it before the softmax. */
  temperature: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(100)), 0),
  /** Nucleus: the smallest set of most likely tokens whose probability reaches top_p (1: all of them). */
  top_p: v.optional(v.pipe(v.number(), v.gtValue(0, "top_p must be > 0"), v.maxValue(1)), 1),
  seed: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(2 ** 32 - 1)), 0),
});
export type SamplingInput = v.InferInput<typeof SamplingSchema>;
export type Sampling = v.InferOutput<typeof SamplingSchema>;

export const GREEDY: Sampling = { temperature: 0, top_p: 1, seed: 0 };

/**
 * Settings from any source (flags, JSON), checked by the one schema: a UserError naming the first bad field, as
 * `name` spells it (the CLI says --top-p where JSON says top_p).
 */
export function parseSampling(input: unknown, name: (field: string) => string = (field) => field): Sampling {
  const result = v.safeParse(SamplingSchema, input ?? {});
  if (result.success) return result.output;
  const first = result.issues[0];
  const path = v.getDotPath(first);
  const where = path && name(path);
  throw new UserError(`${where ? `${where}: ` : ""}${first.message}`, 400, result.issues.map((i) => ({ path: v.getDotPath(i) ?? "", message: i.message })));
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/**
 * The next token from one row of logits and a uniform u ∈ [0, 1). Probabilities are computed in float64; the
 * nucleus keeps tokens in order of probability (ties: the lower id first) until their mass reaches top_p·total,
 * always at least the most likely one, and u picks within it by cumulative mass.
 */
export function sampleToken(logits: ArrayLike<number>, s: Sampling, u: number): number {
  if (s.temperature === 0) return argmax(logits);
  const V = logits.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) max = Math.max(max, logits[i]);
  const p = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) total += p[i] = Math.exp((logits[i] - max) / s.temperature);
  // the nucleus as ids in order of probability; null: every token, in id order (top_p = 1 needs no sort)
  let nucleus: number[] | null = null;
  let mass = total;
  if (s.top_p < 1) {
    const sorted = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
    let kept = 0;
    mass = 0;
    while (kept < V && (kept === 0 || mass < s.top_p * total)) mass += p[sorted[kept++]];
    nucleus = sorted.slice(0, kept);
  }
  const count = nucleus ? nucleus.length : V;
  const at = (k: number) => (nucleus ? nucleus[k] : k);
  const target = u * mass;
  let cumulative = 0;
  for (let k = 0; k < count; k++) {
    cumulative += p[at(k)];
    if (target < cumulative) return at(k);
  }
  return at(count - 1); // u·mass rounded up to the total
}

/** One independent uniform stream per request row, from the seed and the row's index. */
export class RowStreams {
  private readonly streams = new Map<number, Rng>();
  private readonly seeds: number[] = [];
  private readonly master: Rng;

  constructor(private readonly sampling: Sampling) {
    this.master = new Rng(sampling.seed);
  }

  /** Row i's next token (greedy rows draw nothing). */
  next(row: number, logits: ArrayLike<number>): number {
    if (this.sampling.temperature === 0) return argmax(logits);
    return sampleToken(logits, this.sampling, this.stream(row).uniform());
  }

  private stream(row: number): Rng {
    let rng = this.streams.get(row);
    if (!rng) {
      while (this.seeds.length <= row) this.seeds.push(this.master.nextUint32());
      this.streams.set(row, (rng = new Rng(this.seeds[row])));
    }
    return rng;
  }
}
