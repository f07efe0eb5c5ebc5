/**
 * SequenceSource's batching: length bucketing cuts padding while every example is still seen once per epoch, it is
 * deterministic per seed and resumes exactly from its saved state; "padded" keeps the order and shapes of before.
 */
import { expect, test } from "bun:test";
import { Rng } from "../../src/model/rng.ts";
import { LENGTH_STEP, type Sequence, SequenceSource } from "../../src/train/batches.ts";

// 203 sequences of 2 … 120 tokens (lengths spread like prompts + rationales), each id naming its sequence
const rng0 = new Rng(1);
const sequences: Sequence[] = Array.from({ length: 203 }, (_, i) => {
  const n = 2 + rng0.int(119);
  return { ids: Array.from({ length: n }, () => i), weights: Array.from({ length: n - 1 }, (_, t) => (t % 3 === 0 ? 0 : 1)) };
});
const T = 100; // the longest sequences are cut
const B = 4;

/** The sequence of each row (its first token) and the batch's shape. */
function draw(source: SequenceSource, rng: Rng, batches: number) {
  return Array.from({ length: batches }, () => {
    const b = source.next(rng);
    return { B: b.B, T: b.T, rows: Array.from({ length: b.B }, (_, r) => b.tokens[r * b.T]), tokens: b.tokens, weights: b.weights };
  });
}

function padding(batches: ReturnType<typeof draw>) {
  let processed = 0;
  let real = 0;
  for (const b of batches) {
    processed += b.B * b.T;
    for (const id of b.rows) real += Math.min(sequences[id].ids.length - 1, T);
  }
  return 1 - real / processed;
}

test("bucketed: each epoch sees every example once, batches only as long as their longest row, far less padding", () => {
  const perEpoch = Math.ceil(203 / B); // 51 batches, the last one of 3 rows
  const source = new SequenceSource(sequences, B, T, "bucketed");
  const batches = draw(source, new Rng(7), perEpoch * 2);
  for (const epoch of [0, 1]) {
    const seen = batches.slice(epoch * perEpoch, (epoch + 1) * perEpoch);
    expect(seen.map((b) => b.B)).toEqual([...Array(perEpoch - 1).fill(B), 3]);
    expect(seen.flatMap((b) => b.rows).sort((a, b) => a - b)).toEqual(sequences.map((_, i) => i));
  }
  for (const b of batches) {
    const longest = Math.max(...b.rows.map((id) => Math.min(sequences[id].ids.length - 1, T)));
    expect(b.T).toBe(Math.min(T, Math.ceil(longest / LENGTH_STEP) * LENGTH_STEP));
    // rows carry their sequence: tokens, then weight-0 padding
    b.rows.forEach((id, r) => {
      const n = Math.min(sequences[id].ids.length - 1, T);
      expect(Array.from(b.weights.subarray(r * b.T, r * b.T + n))).toEqual(sequences[id].weights.slice(0, n));
      expect(b.weights.subarray(r * b.T + n, (r + 1) * b.T).every((w) => w === 0)).toBe(true);
    });
  }
  const padded = draw(new SequenceSource(sequences, B, T, "padded"), new Rng(7), perEpoch * 2);
  expect(padded.every((b) => b.T === T)).toBe(true);
  const [before, after] = [padding(padded), padding(batches)];
  expect(before).toBeGreaterThan(0.35);
  expect(after).toBeLessThan(0.08);
  // batch lengths are mixed through the epoch, not sorted
  const lengths = batches.slice(0, perEpoch - 1).map((b) => b.T);
  expect(lengths).not.toEqual([...lengths].sort((a, b) => a - b));
});

test("bucketed batches are deterministic per seed and resume exactly from a saved state", () => {
  const a = draw(new SequenceSource(sequences, B, T, "bucketed"), new Rng(3), 120);
  const b = draw(new SequenceSource(sequences, B, T, "bucketed"), new Rng(3), 120);
  expect(b).toEqual(a);
  expect(draw(new SequenceSource(sequences, B, T, "bucketed"), new Rng(4), 120)).not.toEqual(a);
  const first = new SequenceSource(sequences, B, T, "bucketed");
  const rng = new Rng(3);
  draw(first, rng, 70); // into the second epoch
  const resumed = new SequenceSource(sequences, B, T, "bucketed");
  resumed.restore(JSON.parse(JSON.stringify(first.state())));
  expect(draw(resumed, Rng.fromState(rng.state()), 50)).toEqual(a.slice(70));
});

test("examples of one length (the hops dataset) batch exactly as padded batches them", () => {
  const same = sequences.slice(0, 200).map((s, i) => ({ ids: Array(47).fill(i), weights: Array(46).fill(1) }));
  const [bucketed, padded] = (["bucketed", "padded"] as const).map((batching) => draw(new SequenceSource(same, B, 46, batching), new Rng(9), 120));
  expect(bucketed).toEqual(padded);
});

test("padded keeps the plain seeded shuffle of before bucketing", () => {
  const rng = new Rng(11);
  const order = sequences.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  const rows = draw(new SequenceSource(sequences, B, T, "padded"), new Rng(11), 10).flatMap((b) => b.rows);
  expect(rows).toEqual(order.slice(0, 40));
});
