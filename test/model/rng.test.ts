import { expect, test } from "bun:test";
import { Rng } from "../../src/model/rng.ts";

test("same seed same stream; state save/restore resumes it exactly", () => {
  const a = new Rng(42);
  const b = new Rng(42);
  for (let i = 0; i < 10; i++) expect(a.nextUint32()).toBe(b.nextUint32());
  const saved = a.state();
  const next = [a.normal(), a.uniform(), a.int(1000)];
  const resumed = Rng.fromState(JSON.parse(JSON.stringify(saved)));
  expect([resumed.normal(), resumed.uniform(), resumed.int(1000)]).toEqual(next);
  expect(new Rng(43).nextUint32()).not.toBe(new Rng(42).nextUint32());
  expect(() => Rng.fromState([0, 0, 0, 0])).toThrow();
});

test("uniform and normal moments", () => {
  const rng = new Rng(1);
  const n = 100_000;
  let sum = 0, sumSq = 0, uSum = 0;
  for (let i = 0; i < n; i++) {
    const x = rng.normal(2);
    sum += x;
    sumSq += x * x;
    const u = rng.uniform();
    expect(u >= 0 && u < 1).toBe(true);
    uSum += u;
  }
  expect(Math.abs(sum / n)).toBeLessThan(0.05);
  expect(Math.sqrt(sumSq / n)).toBeCloseTo(2, 1);
  expect(uSum / n).toBeCloseTo(0.5, 2);
});
