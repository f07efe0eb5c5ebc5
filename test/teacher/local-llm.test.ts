/**
 * A REAL language model (stories260K, GGUF, via node-llama-cpp on one CPU thread) behind the teacher: the same
 * client, limits, parsing, store and service code as a hosted teacher. The model writes children's stories, so the
 * test checks the plumbing (non-empty text, usage, storage, store hits), not the reasoning.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { TeacherClient } from "../../src/teacher/client.ts";
import { DEFAULT_LOCAL_MODEL, loadNodeLlamaCpp, startLocalLlmServer } from "../../src/teacher/local-llm.ts";
import { TeacherService } from "../../src/teacher/service.ts";

const dir = mkdtempSync(join(tmpdir(), "cot-local-llm-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the shipped GGUF model is small and is the file SOURCE.txt names", () => {
  expect(statSync(DEFAULT_LOCAL_MODEL).size).toBeLessThan(2 * 1024 * 1024);
  const source = readFileSync(join(DEFAULT_LOCAL_MODEL, "../SOURCE.txt"), "utf8");
  const digest = createHash("sha256").update(readFileSync(DEFAULT_LOCAL_MODEL)).digest("hex");
  expect(source).toContain(`${digest}  stories260K-ctx512.gguf`);
});

const backend = await loadNodeLlamaCpp();
if ("error" in backend) {
  console.warn(`SKIPPING the real local LLM test: ${backend.error}`);
  test.skip(`real local LLM teacher (skipped: ${backend.error})`, () => {});
} else {
  describe("a real local LLM as the teacher", async () => {
    const server = await startLocalLlmServer({ threads: 1 });
    afterAll(() => server.stop());
    const db = openDatabase(join(dir, "local.sqlite"));
    const teacher = new TeacherService({
      db,
      client: new TeacherClient({ baseURL: server.baseURL, apiKey: "", model: server.model, timeoutMs: 30_000 }),
      // a story model never says "Q:": end each answer at its first line so it finishes before max_tokens
      defaults: { temperature: 0.8, maxTokens: 120, stop: ["\n"] },
    });
    const item = {
      dataset: "cqa",
      split: "train",
      id: "local-llm-1",
      question: "Where would you put a teddy bear before going to sleep?",
      choices: ["bed", "oven", "river", "car", "shop"].map((text, i) => ({ label: "ABCDE"[i], text })),
      answer: "A",
    };

    test("generates, counts usage, stores; the second request is served from the store", async () => {
      const first = await teacher.rationales({ item });
      const [sample] = first.samples;
      expect(sample.fromStore).toBe(false);
      expect(sample.rationale.trim().length).toBeGreaterThan(0);
      expect(sample.usage!.promptTokens).toBeGreaterThan(100); // the few-shot prompt, cut to the context window
      expect(sample.usage!.completionTokens).toBeGreaterThan(0);
      expect(sample.model).toBe(server.model);
      expect(sample.costUsd).toBeNull(); // no price for a local model
      const stored = teacher.store.get(sample.key)!;
      expect(stored.rawCompletion.trim().length).toBeGreaterThan(0);
      expect(stored.latencyMs).toBeGreaterThan(0);
      expect(server.requests()).toBe(1);

      const second = await teacher.rationales({ item });
      expect(second.samples[0]).toMatchObject({ fromStore: true, rationale: sample.rationale, key: sample.key });
      expect(server.requests()).toBe(1);
    });

    test("n = 2 samples come from one request and differ", async () => {
      const math = { question: "Tom has 3 red balls and 4 blue balls. How many balls does Tom have?", answer: "7" };
      const result = await teacher.rationales({ item: math, params: { n: 2 } });
      expect(result.samples.map((s) => s.sampleIndex)).toEqual([0, 1]);
      expect(result.samples[0].rationale).not.toBe(result.samples[1].rationale);
      expect(server.requests()).toBe(2);
      expect(teacher.store.count()).toBe(3);
    });
  });
}
