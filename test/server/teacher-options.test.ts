/**
 * The new teacher options where users meet them: POST /v1/rationales with choices as plain strings and the answer as
 * a choice's text, a format or a template per request; POST /v1/jobs dry runs, budgets and resume; the rationale
 * browser's query; and the `rationales` CLI (--dry-run, --max-cost then --resume, --template FILE, --shots) as a
 * child process against the fake teacher over real HTTP.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createApp } from "../../src/server/app.ts";
import { PROJECT_ROOT } from "../helpers/cli.ts";
import { startTeacherStack, TEST_API_KEY, type TeacherStack } from "../helpers/teacher-stack.ts";

let stack: TeacherStack;
let app: ReturnType<typeof createApp>;
beforeAll(async () => {
  stack = await startTeacherStack();
  app = createApp(stack.runtime.appDeps());
});
afterAll(() => stack.close());

const post = (path: string, body: unknown) =>
  app.request(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("POST /v1/rationales", () => {
  test("choices as plain strings are labelled A, B, …; the answer may be a choice's text", async () => {
    const res = await post("/v1/rationales", { question: "Where is milk kept cold?", choices: ["oven", "fridge", "garden"], answer: "fridge" });
    expect(res.status).toBe(200);
    const last = stack.fake.requests.at(-1)!.body.messages[0].content;
    expect(last).toEndWith("Q: Where is milk kept cold?\nAnswer Choices: (a) oven (b) fridge (c) garden\nA:");
    const { samples } = (await res.json()) as { samples: Array<{ label: string; agrees: boolean }> };
    expect(samples[0].agrees).toBe(samples[0].label === "B");
    const bad = await post("/v1/rationales", { question: "q", choices: ["a", "b"], answer: "c" });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain("answer must be a choice's label or its text");
  });

  test("a question without choices is asked free-form; format, shots, mode and an inline template pick explicitly", async () => {
    await post("/v1/rationales", { question: "Who wrote Hamlet?" });
    expect(stack.fake.requests.at(-1)!.body.messages[0].content).toContain(JSON.parse(await Bun.file("src/teacher/exemplars/short-answer.json").text()).exemplars[0].question);
    await post("/v1/rationales", { question: "Tom has 3 apples and gets 4 more. How many?", format: "math", shots: 0 });
    expect(stack.fake.requests.at(-1)!.body.messages[0].content).toStartWith("Solve the math word problem. Reason step by step");
    const template = { name: "mine", revision: 2, format: "short-answer", exemplars: [{ question: "2+2?", rationale: "Two and two make four.", answer: "4" }] };
    const res = await post("/v1/rationales", { question: "3+3?", template, answer: "6" });
    expect(res.status).toBe(200);
    expect(stack.fake.requests.at(-1)!.body.messages[0].content).toBe("Q: 2+2?\nA: Two and two make four. So the answer is 4.\n\nQ: 3+3?\nA:");
    const { samples } = (await res.json()) as { samples: Array<{ template: string }> };
    expect(samples[0].template).toMatch(/^mine@2\+[0-9a-f]{8}$/);
    const refused = await post("/v1/rationales", { question: "q", template: "nope" });
    expect(refused.status).toBe(400);
  });
});

describe("POST /v1/jobs", () => {
  test("dryRun answers the estimate and creates nothing", async () => {
    const jobsBefore = stack.runtime.jobs.store.list().length;
    const res = await post("/v1/jobs", { dataset: "cqa", split: "test", limit: 4, dryRun: true, model: "gpt-4o-mini" });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ dryRun: true, items: 4, samples: 4, model: "gpt-4o-mini", mode: "online" });
    expect(stack.runtime.jobs.store.list().length).toBe(jobsBefore);
  });

  test("a budget stops the job; POST /v1/jobs/:id/resume with a higher one finishes it", async () => {
    const created = (await (await post("/v1/jobs", { dataset: "cqa", split: "test", limit: 10, concurrency: 1, model: "gpt-4o-mini", maxCostUsd: 0.0001 })).json()) as { id: string };
    const stopped = await stack.runtime.jobs.settled(created.id);
    expect(stopped).toMatchObject({ status: "running", stopped: "max_cost" });
    const resumed = await post(`/v1/jobs/${created.id}/resume`, { maxCostUsd: 1 });
    expect(resumed.status).toBe(202);
    expect(await stack.runtime.jobs.settled(created.id)).toMatchObject({ status: "done", done: 10, stopped: null });
    expect((await post("/v1/jobs", { dataset: "cqa", split: "test", batch: true, maxCostUsd: 1 })).status).toBe(422);
  });

  test("the rationale browser's query is validated", async () => {
    const page = (await (await app.request("/v1/rationales/browse?dataset=cqa&agrees=true&limit=3")).json()) as { rows: Array<{ agrees: boolean }>; total: number; limit: number };
    expect(page.limit).toBe(3);
    expect(page.rows.length).toBeLessThanOrEqual(3);
    expect(page.rows.every((r) => r.agrees)).toBe(true);
    expect((await app.request("/v1/rationales/browse?agrees=maybe")).status).toBe(400);
    expect((await app.request("/v1/rationales/browse?limit=-1")).status).toBe(400);
  });
});

/** `bun src/cli.ts rationales …` against the fake teacher (an async child: the fake answers in this process). */
async function rationalesCli(...args: string[]) {
  const child = Bun.spawn([process.execPath, "src/cli.ts", "rationales", ...args, "--db", join(stack.dir, "cli.sqlite"), "--base-url", stack.fake.baseURL], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, OPENAI_API_KEY: TEST_API_KEY, TEACHER_MODEL: "gpt-4o-mini" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { stdout, stderr, code };
}

describe("rationales CLI", () => {
  test("--dry-run prints items, tokens and cost and asks nothing", async () => {
    const before = stack.fake.requests.length;
    const out = await rationalesCli("--dataset", "cqa", "--split", "test", "--limit", "5", "--dry-run");
    expect(out.code).toBe(0);
    expect(out.stderr).toMatch(/^dry run: cqa\/test 5 items \(0 already stored\), 5 samples to request with gpt-4o-mini \(template cqa-cot@1\+[0-9a-f]{8}\); ≈ \d+ prompt \+ ≤ 1280 completion tokens; ≈ \$0\.\d+/);
    expect(stack.fake.requests.length).toBe(before);
  });

  test("--max-cost stops cleanly and says how to continue; --resume with --max-cost finishes", async () => {
    const stopped = await rationalesCli("--dataset", "cqa", "--split", "test", "--limit", "8", "--concurrency", "1", "--max-cost", "0.0001", "--json");
    expect(stopped.code).toBe(0);
    const job = JSON.parse(stopped.stdout) as { id: string; done: number; stopped: string };
    expect(job.stopped).toBe("max_cost");
    expect(job.done).toBeLessThan(8);
    expect(stopped.stderr).toContain(`continue with  bun src/cli.ts rationales --resume ${job.id} --max-cost HIGHER`);
    const resumed = await rationalesCli("--resume", job.id, "--max-cost", "5", "--json");
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ status: "done", done: 8, stopped: null });
  });

  test("--template FILE and --shots shape the prompt; a broken template fails before anything is stored", async () => {
    const file = join(stack.dir, "mine.json");
    writeFileSync(file, JSON.stringify({ name: "mine", revision: 1, format: "multiple-choice", exemplars: [{ question: "Pick a", choices: [{ label: "A", text: "a" }, { label: "B", text: "b" }], rationale: "It says a.", answer: "A" }] }));
    const before = stack.fake.requests.length;
    const out = await rationalesCli("--dataset", "cqa", "--split", "test", "--limit", "2", "--template", file);
    expect(out.code).toBe(0);
    expect(stack.fake.requests[before].body.messages[0].content).toStartWith("Q: Pick a\nAnswer Choices: (a) a (b) b\nA: It says a. So the answer is (a).\n\nQ: ");
    const broken = join(stack.dir, "broken.json");
    writeFileSync(broken, JSON.stringify({ name: "b", revision: 1, format: "math", exemplars: [] }));
    const refused = await rationalesCli("--dataset", "cqa", "--split", "test", "--limit", "2", "--template", broken);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toMatch(/^cot-distill: exemplar file .*broken\.json: exemplars: /);
    const from = stack.fake.requests.length;
    const explained = await rationalesCli("--dataset", "cqa", "--split", "test", "--limit", "1", "--shots", "1", "--mode", "explain");
    expect(explained.code).toBe(0);
    const prompt = stack.fake.requests[from].body.messages[0].content;
    expect(prompt.match(/So the answer is \(/g)).toHaveLength(1);
    expect(prompt).toMatch(/The correct answer is \([a-e]\)\. Explain why\.\nA:$/);
    const badMode = await rationalesCli("--dataset", "cqa", "--split", "test", "--mode", "guess");
    expect(badMode.stderr.trim()).toBe("cot-distill: --mode: mode must be one of: free, explain");
  });
});
