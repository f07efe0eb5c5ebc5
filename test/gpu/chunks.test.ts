import { describe, expect, test } from "bun:test";
import { assertU32, MAX_BINDING_BYTES, planChunks } from "../../src/gpu/chunks.ts";
import { headRowChunk, headVocabChunks, HEAD_LOGITS_BYTES } from "../../src/gpu/kernels/crossentropy.ts";

/** Every property a chunk plan promises, for `count` items of `itemBytes` under `limit`. */
function expectValidPlan(count: number, itemBytes: number, limit: number, alignItems = 1) {
  const chunks = planChunks(count, itemBytes, limit, alignItems);
  let next = 0;
  for (const c of chunks) {
    expect(c.first).toBe(next); // consecutive, no gap, no overlap
    expect(c.count).toBeGreaterThan(0);
    expect(c.count * itemBytes).toBeLessThanOrEqual(limit); // bindable
    expect((c.first * itemBytes) % 256).toBe(0); // its offset is a valid binding offset
    expect(c.first % alignItems).toBe(0);
    expect(c.count * itemBytes).toBeLessThan(2 ** 32); // indices within it fit a u32
    next += c.count;
  }
  expect(next).toBe(count);
  return chunks;
}

describe("planChunks", () => {
  test("what fits is one chunk; an empty tensor is none", () => {
    expect(planChunks(1000, 4, 4000)).toEqual([{ first: 0, count: 1000 }]);
    expect(planChunks(0, 4, 4000)).toEqual([]);
  });

  test("GPT-2's token embedding on a 128 MiB limit: two ranges, the first of 43648 rows (a multiple of 64)", () => {
    const chunks = expectValidPlan(50257, 768 * 4, 128 << 20, 64);
    expect(chunks.map((c) => c.count)).toEqual([43648, 6609]);
  });

  test("huge sizes: Gemma's 256k × 2048 (2 GiB) and 256k × 18432 (17.6 GiB, past 2³² floats·4) tables, 124M–7B floats", () => {
    for (const limit of [128 << 20, 1 << 30, MAX_BINDING_BYTES]) {
      expectValidPlan(256_000, 2048 * 4, limit, 64);
      expectValidPlan(256_000, 18_432 * 4, limit, 64);
      expectValidPlan(124_439_808, 4, limit);
      expectValidPlan(7_000_000_000, 4, limit);
    }
    // awkward row sizes (item offsets need several items to reach 256-byte alignment)
    expectValidPlan(1000, 36 * 4, 10_000);
    expectValidPlan(999_983, 3 * 4, 1 << 20);
  });

  test("a limit below one aligned group of items is refused", () => {
    expect(() => planChunks(1000, 4 * 24, 24 * 4 * 7, 64)).toThrow("cannot bind 64 items of 96 bytes");
  });
});

describe("the head's chunk plan", () => {
  test("row chunks keep a [V, R] logits chunk within its budget, whatever N and V", () => {
    for (const [N, V] of [[8192, 50257], [4096, 256_000], [1 << 20, 32_000], [3, 1000], [65_536, 67]]) {
      const R = headRowChunk(N, V);
      expect(R).toBeGreaterThanOrEqual(1);
      expect(R).toBeLessThanOrEqual(N);
      expect(R * V * 4).toBeLessThanOrEqual(HEAD_LOGITS_BYTES);
      assertU32(R * V, "logits chunk");
    }
    expect(headRowChunk(8192, 50257)).toBe(333);
    expect(headRowChunk(8192, 50257, 1 << 20)).toBe(5); // a lower binding limit shrinks it
  });

  test("vocabulary slices of W start where both W's and the logits chunk's slices are 256-byte aligned", () => {
    for (const R of [1, 7, 333]) {
      for (const c of headVocabChunks(256_000, 2304, 128 << 20)) {
        expect((c.first * R * 4) % 256).toBe(0);
        expect((c.first * 2304 * 4) % 256).toBe(0);
      }
    }
  });

  test("assertU32 refuses what passes 2³² − 1", () => {
    expect(() => assertU32(2 ** 32, "x")).toThrow("does not fit the 32-bit indices");
    expect(() => assertU32(2 ** 32 - 1, "x")).not.toThrow();
  });
});
