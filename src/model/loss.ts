/** Forward-only scoring: the mean next-token cross-entropy of sequences under a model. */
import { UserError } from "../errors.ts";
import { Recorder } from "../gpu/recorder.ts";
import type { Batch, DecoderModel } from "./decoder.ts";

/** A batch that predicts ids[1..] from ids[..-1] of one sequence, every prediction weighted 1. */
export function nextTokenBatch(ids: ArrayLike<number>): Batch {
  const T = ids.length;
  if (T < 2) throw new UserError(`need at least 2 tokens to score, got ${T}`);
  const tokens = Uint32Array.from(ids);
  const targets = new Uint32Array(T);
  const weights = new Float32Array(T);
  for (let t = 0; t < T - 1; t++) {
    targets[t] = tokens[t + 1];
    weights[t] = 1;
  }
  return { tokens, targets, weights, B: 1, T };
}

/** Mean cross-entropy (nats) over the weighted positions of a batch, and how many positions that was. */
export async function scoreBatch(model: DecoderModel, batch: Batch, recorder = new Recorder(model.gpu)): Promise<{ loss: number; tokens: number }> {
  model.setBatch(batch);
  model.forward(recorder, 0);
  recorder.submit();
  const losses = await model.readLosses();
  let sum = 0;
  let weight = 0;
  for (let i = 0; i < losses.length; i++) {
    sum += losses[i];
    weight += batch.weights[i];
  }
  return { loss: sum / weight, tokens: weight };
}
