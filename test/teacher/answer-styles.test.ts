/**
 * Teachers as real models answer, end to end: a fake teacher (real OpenAI wire format) in each style runs a bulk job
 * over real dataset items into a real SQLite store, and every item must be stored with the label the teacher gave
 * and a clean rationale (no answer phrase, no markdown, no <think> block); reasoning kept apart, reasoning tokens
 * counted. Answers that are no rationale (empty, no label, a refusal — finish_reason "stop") fail, are kept for
 * inspection, are never served, and are asked again by retry-failed. A teacher refusing response_format falls back
 * to text and says so once.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { loadSplit, registerJsonl } from "../../src/data/registry.ts";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { progressLine, command as rationalesCommand } from "../../src/commands/rationales.ts";
import { loadRationales } from "../../src/distill/rationales.ts";
import { createApp } from "../../src/server/app.ts";
import { generationParams } from "../../src/teacher/jobs.ts";
import { openDatabase } from "../../src/store/db.ts";
import { RationaleStore, rationaleText } from "../../src/store/rationales.ts";
import { costUsd } from "../../src/teacher/pricing.ts";
import { fakeBatches } from "../helpers/fake-batches.ts";
import { countTokens, defaultAnswer, lastQuestion, type AnswerStyle, type Behaviour, type RecordedRequest } from "../helpers/fake-openai.ts";
import { startTeacherStack, type TeacherStack } from "../helpers/teacher-stack.ts";

let stack: TeacherStack | null = null;
afterEach(async () => {
  await stack?.close();
  stack = null;
});

const gull = [
  { label: "A", text: "desert" },
  { label: "B", text: "sea" },
  { label: "C", text: "mine" },
];
const STYLES: AnswerStyle[] = ["palm", "answer-colon", "markdown", "label-first", "json", "reasoning_content", "think"];
const LIMIT = 6;

/** What the fake answers for an item: the label it picks (multiple choice) or the sum (math). */
function expectedLabel(question: string): string {
  const labels = [...question.matchAll(/\(([a-z])\)/g)].map((m) => m[1].toUpperCase());
  return defaultAnswer(question, labels);
}

describe("a bulk job stores every item correctly whatever the teacher's answer style", () => {
  for (const style of STYLES) {
    test(style, async () => {
      const warnings: string[] = [];
      stack = await startTeacherStack({
        fake: { style },
        runtime: { client: { warn: (m) => warnings.push(m) }, teacherDefaults: { structured: style === "json" } },
      });
      const { jobs, teacher } = stack.runtime;
      for (const dataset of ["cqa", "svamp"] as const) {
        const job = await jobs.settled((await jobs.create({ dataset, split: "test", limit: LIMIT, concurrency: 3 })).id);
        expect(job).toMatchObject({ status: "done", done: LIMIT, failed: 0, parseFailureRate: 0, failuresByKind: {} });
        const items = (await loadSplit(dataset, "test")).slice(0, LIMIT);
        const stored = items.flatMap((item) => teacher.store.forItem(dataset, item.id));
        expect(stored).toHaveLength(LIMIT);
        for (const record of stored) {
          const asked = stack.fake.requests.find((r) => lastQuestion(r.body).startsWith(record.question.trim().split("\n")[0]))!;
          expect(record.label).toBe(expectedLabel(lastQuestion(asked.body)));
          expect(record.rationale).toMatch(/^The question asks: .*Thinking step 1/);
          expect(record.rationale).not.toMatch(/answer is|Answer:|\*\*|<think>|Reasoning:|\{"/);
          if (style === "reasoning_content" || style === "think") {
            expect(record.reasoning).toMatch(/^Let me think\. Step 1: /);
            expect(record.reasoningTokens).toBeGreaterThan(0);
            expect(rationaleText(record, "reasoning")).toBe(record.reasoning);
            expect(rationaleText(record, "both")).toBe(`${record.reasoning}\n\n${record.rationale}`);
          } else {
            expect(record.reasoning).toBeNull();
            expect(rationaleText(record, "reasoning")).toBeNull();
          }
          expect(rationaleText(record, "explanation")).toBe(record.rationale);
          if (style === "think") expect(record.rawCompletion).toContain("<think>"); // raw kept as the teacher wrote it
        }
        if (style === "reasoning_content" || style === "think") {
          expect(job.reasoningTokens).toBe(stored.reduce((sum, r) => sum + r.reasoningTokens!, 0));
        }
      }
      const structured = stack.fake.requests.filter((r) => r.body.response_format?.type === "json_schema");
      expect(structured.length).toBe(style === "json" ? stack.fake.requests.length : 0);
      expect(warnings).toEqual([]);
    });
  }
});

describe("structured mode", () => {
  test("a teacher that refuses response_format: answers are read as text, and the fallback is said once", async () => {
    const warnings: string[] = [];
    stack = await startTeacherStack({
      fake: { refuseResponseFormat: true },
      runtime: { client: { warn: (m) => warnings.push(m) } },
    });
    const { jobs, teacher } = stack.runtime;
    const job = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 8, concurrency: 4, structured: true })).id);
    expect(job).toMatchObject({ status: "done", done: 8, failed: 0 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("refuses response_format");
    const refused = stack.fake.requests.filter((r) => r.body.response_format);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeLessThanOrEqual(4); // only the calls already in flight when the first 400 came back
    expect(stack.fake.requests.length - refused.length).toBe(8);
    // structured mode is part of the key: the same items asked without it are new answers
    const record = teacher.store.forItem("cqa", (await loadSplit("cqa", "test"))[0].id)[0];
    expect(record.params).toEqual({ temperature: 0, maxTokens: 256, structured: true });
    const plain = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 2 })).id);
    expect(plain).toMatchObject({ done: 2, cached: 0 });
  });

  test("POST /v1/rationales with structured and format: the schema sent is typed per format, the answer read from it", async () => {
    stack = await startTeacherStack({ fake: { style: "json" } });
    const app = createApp(stack.runtime.appDeps());
    const res = await app.request("/v1/rationales", jsonPost({ question: "Tom has 3 and 4 balls. How many?", answer: "7", structured: true, format: "math" }));
    expect(res.status).toBe(200);
    const { samples } = await res.json();
    expect(samples[0]).toMatchObject({ label: "7", agrees: true, reasoning: null });
    expect(samples[0].rationale).toMatch(/^The question asks: /);
    const sent = stack.fake.requests[0].body.response_format!;
    expect(sent.type).toBe("json_schema");
    expect(sent.json_schema!.strict).toBe(true);
    expect(sent.json_schema!.schema).toMatchObject({ required: ["rationale", "answer"], properties: { answer: { type: "number" } } });
    const bad = await app.request("/v1/rationales", jsonPost({ question: "Q?", format: "essay" }));
    expect(bad.status).toBe(400);
  });

  test("a job records the mode it was created with: the default of a process resuming it does not switch it", async () => {
    stack = await startTeacherStack({ fake: { style: "json" }, runtime: { teacherDefaults: { structured: true } } });
    const structured = await stack.runtime.jobs.create({ dataset: "cqa", split: "test", limit: 2 });
    expect(structured.params.structured).toBe(true);
    await stack.runtime.jobs.settled(structured.id);
    expect(stack.fake.requests.every((r) => r.body.response_format?.type === "json_schema")).toBe(true);
    expect(generationParams({}).structured).toBe(false);
    expect(generationParams({ structured: true }).structured).toBe(true);
  });

  test("a structured answer is validated: JSON with a label that is not a choice fails as no_answer", async () => {
    stack = await startTeacherStack({ fake: { style: "json" } });
    stack.fake.script({ kind: "ok", content: JSON.stringify({ rationale: "Because.", answer: "Z" }) });
    const { teacher } = stack.runtime;
    const [item] = await loadSplit("cqa", "test");
    const err = await teacher.rationales({ item, params: { structured: true } }).catch((e) => e);
    expect(err.kind).toBe("no_answer");
    expect(teacher.store.failures()[0]).toMatchObject({ kind: "no_answer", rawCompletion: '{"rationale":"Because.","answer":"Z"}' });
  });
});

describe("answer validity", () => {
  const bad: Behaviour[] = [{ kind: "empty" }, { kind: "no_label" }, { kind: "refusal" }];

  test("empty, label-less and refusing answers (finish_reason stop) fail, are kept raw, never served; retry-failed asks again", async () => {
    stack = await startTeacherStack();
    const { jobs, teacher } = stack.runtime;
    stack.fake.script(...bad, ...bad);
    const job = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 10, concurrency: 1 })).id);
    expect(job).toMatchObject({ status: "done", done: 4, failed: 6 });
    expect(job.failuresByKind).toEqual({ empty: 2, no_answer: 2, refusal: 2 });
    expect(job.parseFailureRate).toBeCloseTo(0.6, 10);
    const items = (await loadSplit("cqa", "test")).slice(0, 10);
    // never stored: only the 4 good answers are in the store
    expect(items.flatMap((item) => teacher.store.forItem("cqa", item.id))).toHaveLength(4);
    const failures = teacher.store.failures();
    expect(failures.map((f) => f.kind).sort()).toEqual(["empty", "empty", "no_answer", "no_answer", "refusal", "refusal"]);
    expect(failures.find((f) => f.kind === "refusal")!.rawCompletion).toBe("I'm sorry, but I can't help with that request.");
    expect(failures.find((f) => f.kind === "no_answer")!.rawCompletion).toBe("Gulls are interesting birds with many habits.");
    // refused answers were billed: the job counts every call's tokens, not only the stored answers'
    const promptOf = (r: RecordedRequest) => countTokens(r.body.messages.map((m) => m.content).join("\n"));
    expect(job.promptTokens).toBe(stack.fake.requests.reduce((sum, r) => sum + promptOf(r), 0));
    const storedCost = items.flatMap((item) => teacher.store.forItem("cqa", item.id)).reduce((sum, r) => sum + r.costUsd!, 0);
    expect(job.costUsd).toBeGreaterThan(storedCost * 2); // 6 refused calls with the same prompt length as the 4 stored

    // never served: asking for a failed item goes to the teacher again
    const before = stack.fake.requests.length;
    const retried = await jobs.settled(jobs.retryFailed(job.id).id);
    expect(retried).toMatchObject({ status: "done", done: 10, failed: 0, parseFailureRate: 0, failuresByKind: {} });
    expect(stack.fake.requests.length - before).toBe(6);
    expect(retried.promptTokens).toBe(stack.fake.requests.reduce((sum, r) => sum + promptOf(r), 0)); // both attempts counted
    expect(items.flatMap((item) => teacher.store.forItem("cqa", item.id))).toHaveLength(10);
  });

  test("an on-demand request answered with a refusal is a 502 naming why, and the next request asks again", async () => {
    stack = await startTeacherStack();
    stack.fake.script({ kind: "refusal" });
    const app = createApp(stack.runtime.appDeps());
    const body = { question: "Where do gulls live?", choices: gull.map((c) => ({ ...c })), answer: "B" };
    const refused = await app.request("/v1/rationales", jsonPost(body));
    expect(refused.status).toBe(502);
    expect((await refused.json()).error).toMatch(/^teacher answer unusable \(refusal\): the teacher declined/);
    const answered = await app.request("/v1/rationales", jsonPost(body));
    expect(answered.status).toBe(200);
    expect((await answered.json()).samples[0]).toMatchObject({ fromStore: false, agrees: expect.any(Boolean) });
    expect(stack.fake.requests).toHaveLength(2);
  });

  test("the job's progress over HTTP and SSE carries the failure kinds and the parse-failure rate", async () => {
    stack = await startTeacherStack();
    stack.fake.script({ kind: "no_label" }, { kind: "ok", content: "Hard. So the answer is either (a) or (b)." });
    const app = createApp(stack.runtime.appDeps());
    const created = await (await app.request("/v1/jobs", jsonPost({ dataset: "cqa", split: "test", limit: 4, concurrency: 1 }))).json();
    await stack.runtime.jobs.settled(created.id);
    const snap = await (await app.request(`/v1/jobs/${created.id}`)).json();
    expect(snap).toMatchObject({
      done: 2,
      failed: 2,
      failuresByKind: { ambiguous: 1, no_answer: 1 },
      parseFailureRate: 0.5,
      parseFailureRates: { ambiguous: 0.25, no_answer: 0.25 },
    });
    const events = await (await app.request(`/v1/jobs/${created.id}/events`)).text();
    expect(events).toContain('"failuresByKind":{"ambiguous":1,"no_answer":1}');
    expect(events).toContain('"parseFailureRate":0.5');
    expect(events).toContain('"parseFailureRates":{"no_answer":0.25,"ambiguous":0.25}');
    expect(progressLine(snap, 0)).toContain("failed 2 (ambiguous 1, no_answer 1; parse failures 50.0%)");
    // the refused answers, raw, for inspection
    const lines = (await (await app.request("/v1/rationales/failures?dataset=cqa&kind=ambiguous")).text()).trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ kind: "ambiguous", rawCompletion: "Hard. So the answer is either (a) or (b).", dataset: "cqa", split: "test" });
    expect(lines[0].message).toContain('the answer names "A" and "B"');
    expect((await app.request("/v1/rationales/failures?kind=No%20Answer")).status).toBe(400);
  });

  test("reasoning tokens are counted and priced as the API reports them (part of completion_tokens)", async () => {
    stack = await startTeacherStack({ fake: { style: "reasoning_content" } });
    const { teacher } = stack.runtime;
    const [item] = await loadSplit("cqa", "test");
    const [sample] = (await teacher.rationales({ item, params: { model: "o3-mini" } })).samples;
    const answer = stack.fake.requests[0];
    expect(answer.body.model).toBe("o3-mini");
    expect(sample.usage!.reasoningTokens).toBeGreaterThan(0);
    expect(sample.usage!.reasoningTokens!).toBeLessThan(sample.usage!.completionTokens);
    expect(sample.costUsd).toBeCloseTo(costUsd("o3-mini", sample.usage!.promptTokens, sample.usage!.completionTokens)!, 12);
    expect(sample.reasoning).toMatch(/^Let me think/);
  });
});

describe("free-form datasets", () => {
  test("a text dataset's items get the short-answer or yes/no template and parse, agreeing under SQuAD-style match", async () => {
    const rows = [
      { q: "Which city is the capital of France?", a: "Paris" },
      { q: "In which year did the Berlin Wall fall?", a: "1989" },
      { q: "Can a pear float on water?", a: "yes" },
    ];
    const file = join(tmpdir(), `cot-free-${process.pid}.jsonl`);
    writeFileSync(file, rows.map((r) => JSON.stringify(r)).join("\n") + "\n");
    registerJsonl("free-form-test", { path: file, fields: { question: "q", answer: "a" } });
    const said: Record<string, string> = { Paris: "the answer is **the Paris**.", "1989": "So the answer is 1989.", yes: "Yes, since a pear is less dense than water." };
    stack = await startTeacherStack({
      fake: {
        fallback: (request) => {
          const question = lastQuestion(request.body);
          const row = rows.find((r) => question.startsWith(r.q))!;
          return { kind: "ok", content: row.a === "yes" ? said.yes : `Thinking about it carefully, ${said[row.a]}` };
        },
      },
    });
    const { jobs, teacher } = stack.runtime;
    const job = await jobs.settled((await jobs.create({ dataset: "free-form-test", split: "train" })).id);
    expect(job).toMatchObject({ done: 3, failed: 0 });
    const stored = (await loadSplit("free-form-test", "train")).map((item) => teacher.store.forItem("free-form-test", item.id)[0]);
    expect(stored.map((r) => [r.label, r.agrees])).toEqual([["the Paris", true], ["1989", true], ["yes", true]]);
    expect(stored.map((r) => r.template.split("@")[0])).toEqual(["short-answer-cot", "short-answer-cot", "strategyqa-cot"]);
    expect(stored[2].rationale).toBe("A pear is less dense than water.");
    const prompts = stack.fake.requests.map((r) => r.body.messages[0].content);
    expect(prompts.filter((p) => p.includes("So the answer is Ottawa."))).toHaveLength(2);
    expect(prompts.filter((p) => p.includes("So the answer is yes."))).toHaveLength(1);
    rmSync(file, { force: true });
  });
});

describe("batch mode reads answers the same way", () => {
  test("reasoning_content and usage from the output file are stored; an empty answer fails its item as empty", async () => {
    const batches = fakeBatches({ style: "reasoning_content", contentFor: (id) => (id.endsWith("/1/0") ? "" : undefined) });
    stack = await startTeacherStack({ fake: { extend: batches.extend } });
    const { jobs, teacher } = stack.runtime;
    const job = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 4, batch: true })).id);
    expect(job).toMatchObject({ mode: "batch", done: 3, failed: 1, failuresByKind: { empty: 1 }, parseFailureRate: 0.25 });
    expect(job.reasoningTokens).toBeGreaterThan(0);
    const items = (await loadSplit("cqa", "test")).slice(0, 4);
    const stored = items.flatMap((item) => teacher.store.forItem("cqa", item.id));
    expect(stored).toHaveLength(3);
    for (const record of stored) {
      expect(record.reasoning).toMatch(/^Let me think/);
      expect(record.reasoningTokens).toBeGreaterThan(0);
    }
    expect(teacher.store.forItem("cqa", items[1].id)).toHaveLength(0);
    expect(teacher.store.failures()[0]).toMatchObject({ kind: "empty", itemId: items[1].id });
    // the empty answer was billed too: its prompt counts in the job beside the stored answers'
    expect(job.promptTokens).toBeGreaterThan(stored.reduce((sum, r) => sum + r.promptTokens!, 0));
  });
});

describe("--rationale-part: what training uses from a reasoning model's answers", () => {
  test("rationales --export writes the chosen part as the rationale, and train's loader reads the file", async () => {
    stack = await startTeacherStack({ fake: { style: "reasoning_content" } });
    await stack.runtime.jobs.settled((await stack.runtime.jobs.create({ dataset: "cqa", split: "test", limit: 3 })).id);
    const items = (await loadSplit("cqa", "test")).slice(0, 3);
    const stored = items.map((item) => stack!.runtime.teacher.store.forItem("cqa", item.id)[0]);
    const read: Record<string, Array<string | null>> = {};
    for (const part of ["explanation", "reasoning", "both"] as const) {
      const file = join(stack.dir, `${part}.jsonl`);
      const code = await rationalesCommand.run(["--export", file, "--dataset", "cqa", "--split", "test", "--rationale-part", part, "--db", stack.dbPath]);
      expect(code).toBe(0);
      read[part] = await loadRationales("cqa", items, file);
    }
    expect(read.explanation).toEqual(stored.map((r) => r.rationale));
    expect(read.reasoning).toEqual(stored.map((r) => r.reasoning));
    expect(read.both).toEqual(stored.map((r) => `${r.reasoning}\n\n${r.rationale}`));
    await expect(rationalesCommand.run(["--export", join(stack.dir, "x.jsonl"), "--dataset", "cqa", "--rationale-part", "trace", "--db", stack.dbPath])).rejects.toThrow(
      "--rationale-part must be one of explanation, reasoning, both",
    );
  });
});

describe("stored bad rows from older databases", () => {
  test("are moved out of the store on open, and the job items they settled become failed (retried by retry-failed)", async () => {
    stack = await startTeacherStack();
    const { jobs, teacher } = stack.runtime;
    const job = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 3, concurrency: 1 })).id);
    expect(job).toMatchObject({ done: 3, failed: 0 });
    const items = (await loadSplit("cqa", "test")).slice(0, 3);
    const [empty, labelless, damaged] = items.map((item) => teacher.store.forItem("cqa", item.id)[0]);
    await stack.runtime.close();

    // what an older version stored: an empty answer, a label-less one, and a <think> block inside the rationale
    const raw = new Database(stack.dbPath);
    const update = raw.query("UPDATE rationales SET raw_completion = ?, rationale = ?, label = ? WHERE key = ?");
    update.run("", "", null, empty.key);
    update.run("Gulls are birds.", "Gulls are birds.", null, labelless.key);
    const think = `<think>hmm</think>\n${damaged.rawCompletion}`;
    update.run(think, `<think>hmm</think> ${damaged.rationale}`, damaged.label, damaged.key);
    raw.exec("DELETE FROM schema_migrations WHERE name = 'rationales-answer-validity'");
    raw.close();

    const reopened = stack.reopen();
    const store = reopened.teacher.store;
    expect(store.get(empty.key)).toBeNull();
    expect(store.get(labelless.key)).toBeNull();
    expect(store.failures(empty.key)[0]).toMatchObject({ kind: "empty", rawCompletion: "" });
    expect(store.failures(labelless.key)[0]).toMatchObject({ kind: "no_answer", rawCompletion: "Gulls are birds." });
    const repaired = store.get(damaged.key)!;
    expect(repaired).toMatchObject({ rationale: damaged.rationale, reasoning: "hmm", label: damaged.label, rawCompletion: think });

    const after = reopened.jobs.require(job.id);
    expect(after).toMatchObject({ done: 1, failed: 2, failuresByKind: { empty: 1, no_answer: 1 } });
    const retried = await reopened.jobs.settled(reopened.jobs.retryFailed(job.id).id);
    expect(retried).toMatchObject({ done: 3, failed: 0 });
    expect(store.get(empty.key)!.label).not.toBeNull();

    // applied once: opening again moves nothing
    const again = openDatabase(stack.dbPath);
    expect(new RationaleStore(again).failures()).toHaveLength(2);
    again.close();
  });
});

function jsonPost(body: unknown): RequestInit {
  return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
}
