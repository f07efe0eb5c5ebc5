/**
 * The sampler on the CPU: its draws follow softmax(logits/temperature) cut to the top-p nucleus (a chi-square test
 * on a fixed logits vector), temperature 0 and a tiny top-p are argmax, streams are per row and reproducible, and
 * bad settings are refused by the one schema.
 */
import { describe, expect, test } from "bun:test";
import { argmax, parseSampling, RowStreams, sampleToken } from "../../src/eval/sampling.ts";
import { Rng } from "../../src/model/rng.ts";

const logits = Float32Array.from([2.0, 1.0, 0.5, -1.0, 0.0, 1.5]);

function softmax(values: ArrayLike<number>, temperature: number): number[] {
  const max = Math.max(...Array.from(values));
  const e = Array.from(values, (x) => Math.exp((x - max) / temperature));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

/** Pearson's χ² of the counts of n draws against the expected probabilities. */
function chiSquare(counts: number[], p: number[], n: number): number {
  return counts.reduce((sum, c, i) => (p[i] > 0 ? sum + (c - n * p[i]) ** 2 / (n * p[i]) : sum), 0);
}

function draws(temperature: number, top_p: number, n: number): number[] {
  const rng = new Rng(123);
  const counts = new Array(logits.length).fill(0);
  const s = parseSampling({ temperature, top_p });
  for (let i = 0; i < n; i++) counts[sampleToken(logits, s, rng.uniform())]++;
  return counts;
}

describe("sampling", () => {
  test("draws follow softmax(logits / temperature): χ² below the 0.1% critical value (5 degrees of freedom: 20.5)", () => {
    const n = 20000;
    for (const temperature of [1, 0.7, 2]) {
      const p = softmax(logits, temperature);
      expect(chiSquare(draws(temperature, 1, n), p, n)).toBeLessThan(20.5);
    }
    // and a wrong distribution is told apart: the counts at temperature 1 against temperature 2's probabilities
    expect(chiSquare(draws(1, 1, n), softmax(logits, 2), n)).toBeGreaterThan(100);
  });

  test("top-p keeps the most likely tokens until their mass reaches p, renormalised; nothing outside is drawn", () => {
    const n = 20000;
    const p = softmax(logits, 1); // order: 0 (0.37), 5 (0.22), 1 (0.14), 2 (0.08), 4 (0.05), 3 (0.02)
    const nucleus = [0, 5, 1];
    expect(p[0] + p[5]).toBeLessThan(0.7);
    expect(p[0] + p[5] + p[1]).toBeGreaterThanOrEqual(0.7);
    const counts = draws(1, 0.7, n);
    for (const i of [2, 3, 4]) expect(counts[i]).toBe(0);
    const kept = nucleus.reduce((s, i) => s + p[i], 0);
    const expected = p.map((x, i) => (nucleus.includes(i) ? x / kept : 0));
    expect(chiSquare(counts, expected, n)).toBeLessThan(13.8); // 2 degrees of freedom, 0.1%
  });

  test("temperature 0, temperature → 0 and a tiny top-p are argmax, for any uniform", () => {
    for (const u of [0, 0.3, 0.999999]) {
      expect(sampleToken(logits, parseSampling({}), u)).toBe(argmax(logits));
      expect(sampleToken(logits, parseSampling({ temperature: 1e-6 }), u)).toBe(0);
      expect(sampleToken(logits, parseSampling({ temperature: 1, top_p: 1e-9 }), u)).toBe(0);
    }
  });

  test("each row has its own stream: reproducible from the seed, independent of the order rows draw in", () => {
    const s = parseSampling({ temperature: 1, seed: 5 });
    const sequence = (order: number[]) => {
      const streams = new RowStreams(s);
      const out: Record<number, number[]> = { 0: [], 1: [], 2: [] };
      for (const row of order) out[row].push(streams.next(row, logits));
      return out;
    };
    const a = sequence([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    expect(sequence([2, 2, 2, 2, 1, 0, 1, 0, 1, 0, 1, 0])).toEqual(a);
    expect(a[0]).not.toEqual(a[1]);
    const other = new RowStreams({ ...s, seed: 6 });
    expect(Array.from({ length: 12 }, () => other.next(0, logits))).not.toEqual(sequence(new Array(12).fill(0))[0]);
  });

  test("bad settings are one clear error", () => {
    expect(() => parseSampling({ temperature: -1 })).toThrow(/temperature/);
    expect(() => parseSampling({ top_p: 0 })).toThrow(/top_p must be > 0/);
    expect(() => parseSampling({ seed: 1.5 })).toThrow(/seed/);
    expect(() => parseSampling({ topp: 1 })).toThrow(/topp/);
  });
});
