/** Error measures shared by the numeric tests (kernels, model, reference): pure, no GPU. */
import { expect } from "bun:test";

/** max|actual − expected| / max|expected| (absolute error when expected is all zeros); NaN anywhere gives Infinity. */
export function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} ≠ expected ${expected.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= diff)) diff = Number.isNaN(d) ? Infinity : d;
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

/** Asserts relativeError(actual, expected) < tolerance; the failure message names the worst element. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what = "result"): void {
  const error = relativeError(actual, expected);
  if (error < tolerance) return;
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= Math.abs(actual[worst] - expected[worst]))) worst = i;
  }
  const detail = `${what}: relative error ${error.toExponential(2)} ≥ ${tolerance} (worst [${worst}]: got ${actual[worst]}, want ${expected[worst]})`;
  expect(detail).toBe(`${what}: within ${tolerance}`);
}
