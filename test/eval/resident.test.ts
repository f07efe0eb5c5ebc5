/**
 * The resident students' LRU (src/eval/resident.ts): a repeated target is not loaded again, the least recently used
 * goes first past the capacity, a model whose files changed is loaded afresh, and a student's decoder is reused
 * while it is big enough; evaluation through it answers as a fresh load does.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { StudentCache } from "../../src/eval/resident.ts";
import { predict } from "../../src/eval/index.ts";
import { familyModelFolder } from "../helpers/families.ts";
import { sharedGpu } from "./synthetic.ts";

const folders = await Promise.all([familyModelFolder("llama", 1, 64), familyModelFolder("qwen2", 2, 64), familyModelFolder("phi", 3, 64)]);
const cache = new StudentCache(2);
afterAll(async () => {
  await cache.destroy();
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
});

describe("student cache", () => {
  test("hits, least-recently-used eviction, reload after the files change", async () => {
    const [a, b, c] = folders;
    const first = await cache.student(a);
    expect(await cache.student(a)).toBe(first);
    expect(cache.loads).toBe(1);
    await cache.student(b);
    await cache.student(a); // a is now the most recently used
    await cache.student(c); // evicts b
    expect(cache.loads).toBe(3);
    expect(cache.size).toBe(2);
    expect(await cache.student(a)).toBe(first);
    await cache.student(b);
    expect(cache.loads).toBe(4);
    // a newer weights file: the same folder is loaded again, its old entry dropped
    const later = new Date(Date.now() + 5_000);
    utimesSync(join(b, "model.safetensors"), later, later);
    const reloaded = await cache.student(b);
    expect(cache.loads).toBe(5);
    expect(await cache.student(b)).toBe(reloaded);
    expect(cache.size).toBe(2);
  });

  test("a decoder is reused while big enough; predictions through the cache equal a fresh load's", async () => {
    const [a] = folders;
    const student = await cache.student(a);
    const d1 = await cache.decoder(student, 2, 16);
    expect(await cache.decoder(student, 1, 8)).toBe(d1);
    const d2 = await cache.decoder(student, 4, 16);
    expect(d2).not.toBe(d1);
    expect([d2.maxRows, d2.maxLength]).toEqual([4, 16]);
    const { gpu, kernels } = await sharedGpu();
    const choices = ["red", "blue"];
    const fresh = await predict(a, "what color is the sky", choices, { gpu, kernels });
    const resident = await predict(a, "what color is the sky", choices, { students: cache });
    expect(resident).toEqual(fresh);
  });
});
