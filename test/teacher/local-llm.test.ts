/**
 * A REAL language model (stories260K, GGUF, via node-llama-cpp on one CPU thread) behind the teacher: the same
 * client, limits, parsing, store and service code as a hosted teacher. The model writes children's stories, never an
 * answer, so the test checks the plumbing and answer validity: its texts are recorded failures, never rationales.
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

    // A story model never states an answer: every text it writes reaches the parser through the real client and is
    // refused there (no readable answer), kept raw for inspection, and never stored as a rationale.
    test("generates; its answer-less stories are recorded failures with the raw text, never stored or served", async () => {
      const err = await teacher.rationales({ item }).catch((e) => e);
      expect(err.kind).toMatch(/^(no_answer|no_rationale|empty|refusal|ambiguous)$/);
      const [failure] = teacher.store.failures();
      expect(failure.model).toBe(server.model);
      expect(failure.kind).toBe(err.kind);
      if (err.kind !== "empty") expect(failure.rawCompletion!.trim().length).toBeGreaterThan(0);
      expect(teacher.store.count()).toBe(0);
      expect(server.requests()).toBe(1);

      await teacher.rationales({ item }).catch(() => {});
      expect(server.requests()).toBe(2); // a failure is never served from the store
    });

    test("n = 2 samples come from one request, each judged on its own", async () => {
      const math = { question: "Tom has 3 red balls and 4 blue balls. How many balls does Tom have?", answer: "7" };
      const before = teacher.store.failures().length;
      const result = await teacher.rationales({ item: math, params: { n: 2 } }).catch((e) => e);
      expect(server.requests()).toBe(3);
      const judged = teacher.store.failures().length - before + teacher.store.count();
      expect(judged).toBe(2); // both samples of the one call: stored, or recorded as failures
      if (!(result instanceof Error)) expect(result.samples.map((s: { sampleIndex: number }) => s.sampleIndex)).toEqual([0, 1]);
    });
  });
}
