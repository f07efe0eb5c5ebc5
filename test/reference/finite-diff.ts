/**
 * Central finite differences for float64 gradient checks: the analytic gradient of a scalar function must match
 * (f(x + h) − f(x − h)) / 2h at every checked coordinate. In float64 with h = 1e-5 the truncation error is ~h²,
 * so agreement to ~1e-6 relative is expected of a correct backward pass and a wrong one misses by far more.
 */
import { expect } from "bun:test";
import { Rng } from "../../src/model/rng.ts";

export function randomArray(rng: Rng, n: number, std = 1): Float64Array {
  const out = new Float64Array(n);
  rng.fillNormal(out, std);
  return out;
}

/** Σ a·b — the scalar a test projects an op's output onto (so dout = the projection vector). */
export function dot(a: Float64Array, b: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
  return sum;
}

/**
 * Checks `analytic` = ∂f/∂x by perturbing x in place (restored afterwards), on every coordinate or on `sample`
 * coordinates picked at random when x is large.
 */
export function expectGradient(
  f: () => number,
  x: Float64Array,
  analytic: Float64Array,
  o: { h?: number; tolerance?: number; sample?: number; rng?: Rng } = {},
): void {
  const h = o.h ?? 1e-5;
  const tolerance = o.tolerance ?? 1e-6;
  const indices = o.sample && o.sample < x.length ? pick(o.rng ?? new Rng(1), x.length, o.sample) : [...x.keys()];
  let scale = 0;
  for (const g of analytic) scale = Math.max(scale, Math.abs(g));
  expect(analytic.length).toBe(x.length);
  for (const i of indices) {
    const saved = x[i];
    x[i] = saved + h;
    const plus = f();
    x[i] = saved - h;
    const minus = f();
    x[i] = saved;
    const numeric = (plus - minus) / (2 * h);
    const error = Math.abs(numeric - analytic[i]) / Math.max(scale, 1e-12);
    if (error > tolerance) throw new Error(`gradient mismatch at ${i}: analytic ${analytic[i]}, numeric ${numeric} (error ${error})`);
  }
}

function pick(rng: Rng, n: number, count: number): number[] {
  return rng.shuffle([...Array(n).keys()]).slice(0, count);
}
