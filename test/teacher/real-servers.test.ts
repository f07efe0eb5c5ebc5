/**
 * Teachers as they really are, over real HTTP against the fake OpenAI-compatible server: servers that refuse n > 1,
 * small context windows, reasoning models that take only max_completion_tokens, responses naming another model than
 * the one requested; templates by format, shots and label-conditioned mode; dry runs, budgets and batch pricing.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { loadSplit } from "../../src/data/registry.ts";
import { BATCH_PRICE_FACTOR, costUsd } from "../../src/teacher/pricing.ts";
import { builtinTemplate, templateFor } from "../../src/teacher/prompts.ts";
import type { TeacherItem } from "../../src/teacher/service.ts";
import { fakeBatches } from "../helpers/fake-batches.ts";
import type { FakeOpenAIOptions } from "../helpers/fake-openai.ts";
import { startTeacherStack, type TeacherStack } from "../helpers/teacher-stack.ts";

let stack: TeacherStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});
async function start(fake: FakeOpenAIOptions = {}): Promise<TeacherStack> {
  stack = await startTeacherStack({ fake });
  return stack;
}

const mc: TeacherItem = {
  question: "Where would you keep milk cold?",
  choices: [
    { label: "A", text: "fridge" },
    { label: "B", text: "oven" },
    { label: "C", text: "drawer" },
  ],
  answer: "A",
};

describe("servers that differ", () => {
  test("n > 1 refused with HTTP 400: n single requests, each sample stored and paid once, single flight kept", async () => {
    const { runtime, fake } = await start({ refuseMultipleSamples: true });
    const events: string[] = [];
    const [a, b] = await Promise.all([
      runtime.teacher.rationales({ item: mc, params: { n: 3, temperature: 0.7 } }),
      runtime.teacher.rationales({ item: mc, params: { n: 3, temperature: 0.7 } }),
    ]);
    // one refused n=3 call, then 3 single ones; the second caller waited for the first (single flight)
    expect(fake.requests.map((r) => r.body.n)).toEqual([3, 1, 1, 1]);
    expect(a.samples.map((s) => s.sampleIndex)).toEqual([0, 1, 2]);
    expect(a.samples.every((s) => !s.fromStore && s.usage !== null)).toBe(true);
    expect(b.samples.every((s) => s.fromStore)).toBe(true);
    // each sample carries its own request's tokens: prompt counted once per request
    const prompt = fake.requests[1].body.messages[0].content.split(/\s+/).filter(Boolean).length;
    expect(a.samples.map((s) => s.usage!.promptTokens)).toEqual([prompt, prompt, prompt]);
    // the model is remembered: the next n > 1 request goes one by one straight away
    await runtime.teacher.rationales({ item: { ...mc, question: "Where is ice kept?" }, params: { n: 2, temperature: 0.7 } });
    expect(fake.requests.slice(4).map((r) => r.body.n)).toEqual([1, 1]);
    expect(runtime.teacher.store.count()).toBe(5);
    void events;
  });

  test("a prompt over the server's context window is a clear per-item failure naming the fix", async () => {
    const { runtime, fake } = await start({ contextWindow: 300 });
    const job = await runtime.jobs.create({ dataset: "cqa", split: "test", limit: 3 });
    const done = await runtime.jobs.settled(job.id);
    expect(done).toMatchObject({ status: "done", failed: 3, done: 0, failuresByKind: { context_length: 3 } });
    const [failure] = runtime.jobs.store.failures(job.id);
    expect(failure.error).toMatch(/longer than the teacher's context window \(.*maximum context length is 300 tokens.*\); use a shorter template: fewer shots \(--shots 0/);
    // not retried: one request per item
    expect(fake.requests.length).toBe(3);
    // the fix works: zero-shot fits
    const zero = await runtime.jobs.settled((await runtime.jobs.create({ dataset: "cqa", split: "test", limit: 3, prompt: { shots: 0 } })).id);
    expect(zero).toMatchObject({ done: 3, failed: 0 });
    const stored = [...(await Array.fromAsync(runtime.teacher.store.list({ dataset: "cqa" })))];
    expect(stored[0].template).toMatch(/^cqa-cot@1\+[0-9a-f]{8}\+k0$/);
  });

  test("reasoning models: max_completion_tokens, no temperature or stop — by name, or learned from a 400", async () => {
    const { runtime, fake } = await start({ reasoningModels: /^(o\d|my-reasoner)/ });
    const byName = await runtime.teacher.rationales({ item: mc, params: { model: "o3-mini" } });
    expect(byName.samples[0].rationale).toContain("The question asks");
    expect(fake.requests[0].body).toMatchObject({ max_completion_tokens: 256 });
    expect(fake.requests[0].body.max_tokens).toBeUndefined();
    expect(fake.requests[0].body.temperature).toBeUndefined();
    expect(fake.requests[0].body.stop).toBeUndefined();
    // a model the name does not give away is asked as usual once, then the reasoning way
    await runtime.teacher.rationales({ item: mc, params: { model: "my-reasoner" } });
    expect(fake.requests.slice(1).map((r) => [r.body.max_tokens, r.body.max_completion_tokens])).toEqual([[256, undefined], [undefined, 256]]);
  });

  test("provenance: the model that actually answered is stored and returned, and prices the answer", async () => {
    const { runtime } = await start({ answeredAs: (model) => `${model}-2024-07-18` });
    const { samples } = await runtime.teacher.rationales({ item: mc, params: { model: "gpt-4o-mini" } });
    expect(samples[0]).toMatchObject({ model: "gpt-4o-mini", answeredBy: "gpt-4o-mini-2024-07-18" });
    expect(runtime.teacher.store.get(samples[0].key)!.answeredBy).toBe("gpt-4o-mini-2024-07-18");
    expect(samples[0].costUsd).toBeCloseTo(costUsd("gpt-4o-mini", samples[0].usage!.promptTokens, samples[0].usage!.completionTokens)!, 12);
  });
});

describe("templates", () => {
  test("a question without choices gets the free-form template; a format or template name picks explicitly", () => {
    expect(templateFor({ question: "Who wrote Hamlet?" }).version).toMatch(/^short-answer-cot@1\+/);
    expect(templateFor({ question: "Tom has 3 apples and 4 more. How many?" }, { format: "math" }).version).toMatch(/^svamp-cot@/);
    expect(templateFor({ question: "x" }, { template: "svamp" }).format).toBe("math");
    expect(() => templateFor({ question: "x" }, { format: "multiple-choice" })).toThrow(/multiple-choice, but the question has no choices/);
    expect(() => templateFor(mc, { template: "svamp", format: "short-answer" })).toThrow(/is for format math, not short-answer/);
  });

  test("zero-shot and k-shot are their own versions; the content of an inline template is part of the key", () => {
    const all = builtinTemplate("multiple-choice");
    const two = templateFor(mc, { shots: 2 });
    const zero = templateFor(mc, { shots: 0 });
    expect(two.version).toBe(`${all.version}+k2`);
    expect(two.render(mc).match(/So the answer is \(/g)?.length).toBe(2);
    expect(zero.render(mc)).toStartWith("Answer the multiple-choice question. Reason step by step");
    expect(zero.render(mc)).toEndWith("Q: Where would you keep milk cold?\nAnswer Choices: (a) fridge (b) oven (c) drawer\nA:");
    const file = { name: "mine", revision: 1, format: "short-answer" as const, exemplars: [{ question: "2+2?", rationale: "Two and two make four.", answer: "4" }] };
    const mine = templateFor({ question: "3+3?" }, { template: file });
    expect(mine.render({ question: "3+3?" })).toBe("Q: 2+2?\nA: Two and two make four. So the answer is 4.\n\nQ: 3+3?\nA:");
    const edited = templateFor({ question: "3+3?" }, { template: { ...file, exemplars: [{ ...file.exemplars[0], rationale: "2 and 2 is 4." }] } });
    expect(edited.version).not.toBe(mine.version);
  });

  test("label-conditioned mode shows the gold answer and asks for an explanation; it needs gold", async () => {
    const explain = templateFor(mc, { mode: "explain" });
    expect(explain.version).toMatch(/\+explain$/);
    expect(explain.render(mc)).toEndWith("Q: Where would you keep milk cold?\nAnswer Choices: (a) fridge (b) oven (c) drawer\nThe correct answer is (a). Explain why.\nA:");
    expect(explain.render(mc)).toContain("The correct answer is (c). Explain why.\nA: The answer must require cable.");
    expect(() => explain.render({ question: "q", choices: mc.choices })).toThrow(/need the item's gold answer/);
    // the teacher follows the answer it is shown
    const { runtime } = await start({ answerFor: (question) => /The correct answer is \(([a-z])\)/.exec(question)![1].toUpperCase() });
    const { samples } = await runtime.teacher.rationales({ item: { ...mc, answer: "C" }, prompt: { mode: "explain" } });
    expect(samples[0]).toMatchObject({ label: "C", agrees: true, template: explain.version });
  });
});

describe("cost", () => {
  test("a dry run counts items, stored ones and tokens, and asks nothing", async () => {
    const { runtime, fake } = await start();
    await runtime.jobs.settled((await runtime.jobs.create({ dataset: "cqa", split: "test", limit: 2, model: "gpt-4o-mini" })).id);
    const before = fake.requests.length;
    const estimate = await runtime.jobs.estimate({ dataset: "cqa", split: "test", limit: 5, n: 2, maxTokens: 100, model: "gpt-4o-mini" });
    expect(fake.requests.length).toBe(before);
    // n: 2 is another cache key than the default n: 1 answers for sample 0? no — sample 0 with the same params is shared
    expect(estimate).toMatchObject({ items: 5, mode: "online", model: "gpt-4o-mini", samples: 10, completionTokens: 1000 });
    expect(estimate.promptTokens).toBeGreaterThan(5 * 300);
    expect(estimate.costUsd).toBeCloseTo(costUsd("gpt-4o-mini", estimate.promptTokens, 1000)!, 12);
    const batch = await runtime.jobs.estimate({ dataset: "cqa", split: "test", limit: 5, n: 2, maxTokens: 100, model: "gpt-4o-mini", batch: true });
    expect(batch.costUsd).toBeCloseTo(estimate.costUsd! * BATCH_PRICE_FACTOR, 12);
    const cached = await runtime.jobs.estimate({ dataset: "cqa", split: "test", limit: 2, model: "gpt-4o-mini" });
    expect(cached).toMatchObject({ items: 2, cached: 2, samples: 0, promptTokens: 0, costUsd: 0 });
  });

  test("--max-cost stops the job cleanly, keeps what it paid for, and resumes with a higher budget", async () => {
    const { runtime } = await start();
    const job = await runtime.jobs.create({ dataset: "cqa", split: "test", limit: 12, concurrency: 2, model: "gpt-4o-mini", maxCostUsd: 0.0002 });
    const stopped = await runtime.jobs.settled(job.id);
    expect(stopped).toMatchObject({ status: "running", stopped: "max_cost", failed: 0 });
    expect(stopped.done).toBeGreaterThan(0);
    expect(stopped.done).toBeLessThan(12);
    expect(stopped.costUsd).toBeGreaterThanOrEqual(0.0002);
    expect(runtime.teacher.store.count({ dataset: "cqa" })).toBe(stopped.done);
    const resumed = await runtime.jobs.settled(runtime.jobs.resumeWithBudget(job.id, null).id);
    expect(resumed).toMatchObject({ status: "done", done: 12, failed: 0, stopped: null });
    expect(runtime.teacher.store.count({ dataset: "cqa" })).toBe(12);
  });

  test("Batch API answers are priced at the batch rate", async () => {
    const batches = fakeBatches();
    const { runtime } = await start({ extend: batches.extend });
    const items = (await loadSplit("cqa", "test")).slice(0, 3);
    const job = await runtime.jobs.settled((await runtime.jobs.create({ dataset: "cqa", split: "test", limit: 3, model: "gpt-4o-mini", batch: true })).id);
    expect(job).toMatchObject({ status: "done", done: 3 });
    const stored = runtime.teacher.store.forItem("cqa", items[0].id)[0];
    const list = costUsd("gpt-4o-mini", stored.promptTokens!, stored.completionTokens!)!;
    expect(stored.costUsd).toBeCloseTo(list * BATCH_PRICE_FACTOR, 12);
    expect(job.costUsd).toBeGreaterThan(0);
  });
});
