/**
 * The Hono app through `app.request()`: routing, validation (400 with valibot issues), body limit (413), unknown
 * dataset/job (404), path-traversal names refused, auth on every route but /healthz, JSON Schemas, and the rationale
 * routes end to end against the fake teacher and a real SQLite file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createApp } from "../../src/server/app.ts";
import { startTeacherStack, TEST_API_KEY, type TeacherStack } from "../helpers/teacher-stack.ts";

let stack: TeacherStack;
let app: ReturnType<typeof createApp>;

beforeAll(async () => {
  stack = await startTeacherStack();
  app = createApp(stack.runtime.appDeps());
});
afterAll(() => stack.close());

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  app.request(path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

const milk = {
  question: "Where would you keep milk cold?",
  choices: [
    { label: "A", text: "refrigerator" },
    { label: "B", text: "oven" },
    { label: "C", text: "garden" },
  ],
  answer: "A",
};

describe("POST /v1/rationales", () => {
  test("asks the teacher once, then serves the stored answer", async () => {
    const before = stack.fake.requests.length;
    const first = await post("/v1/rationales", milk);
    expect(first.status).toBe(200);
    const a = (await first.json()) as { samples: { rationale: string; label: string; agrees: boolean; fromStore: boolean }[] };
    expect(a.samples).toHaveLength(1);
    expect(a.samples[0].fromStore).toBe(false);
    expect(a.samples[0].rationale.length).toBeGreaterThan(0);
    expect(["A", "B", "C"]).toContain(a.samples[0].label);
    expect(a.samples[0].agrees).toBe(a.samples[0].label === "A");

    const second = (await (await post("/v1/rationales", milk)).json()) as typeof a;
    expect(second.samples[0].fromStore).toBe(true);
    expect(second.samples[0].rationale).toBe(a.samples[0].rationale);
    expect(stack.fake.requests.length - before).toBe(1);
  });

  test("n samples come back with distinct indices, no gold answer → agrees null", async () => {
    const { answer: _gold, ...noGold } = milk;
    const res = await post("/v1/rationales", { ...noGold, question: "Where is a cow kept?", n: 3, temperature: 0.7 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { samples: { sampleIndex: number; agrees: null }[] };
    expect(body.samples.map((s) => s.sampleIndex)).toEqual([0, 1, 2]);
    expect(body.samples.every((s) => s.agrees === null)).toBe(true);
  });

  test("invalid bodies are 400 with the valibot issues by path", async () => {
    const res = await post("/v1/rationales", { question: "", temperature: 7, choices: [{ label: "AB", text: "x" }], extra: 1 });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; issues: { path: string; message: string }[] };
    const paths = body.issues.map((i) => i.path);
    expect(paths).toContain("question");
    expect(paths).toContain("temperature");
    expect(paths).toContain("choices.0.label");
    expect(paths).toContain("extra");
  });

  test("malformed JSON is a 400 JSON error, not a crash", async () => {
    const res = await post("/v1/rationales", '{"question": "unterminated');
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBeString();
  });

  test("a body that is not declared JSON is a 400 saying so", async () => {
    const res = await app.request("/v1/rationales", { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify(milk) });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toContain("application/json");
  });

  test("a body over the limit is 413", async () => {
    const small = createApp({ ...stack.runtime.appDeps(), maxBodyBytes: 1024 });
    const res = await small.request("/v1/rationales", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: "x".repeat(4096) }),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: string }).error).toContain("1024");
  });

  test("unknown dataset is 404, a path-traversal name is refused before the disk", async () => {
    expect((await post("/v1/rationales", { ...milk, dataset: "no-such-set" })).status).toBe(404);
    for (const dataset of ["../x", "..", "cqa/../../etc", "/etc/passwd", ".hidden"]) {
      const res = await post("/v1/rationales", { ...milk, dataset });
      expect(res.status).toBe(400);
      expect(JSON.stringify(await res.json())).toContain("dataset");
    }
  });

  test("a teacher that keeps failing is a 5xx JSON answer and the server keeps serving", async () => {
    stack.fake.script({ kind: "error", status: 500 }, { kind: "error", status: 500 });
    const res = await post("/v1/rationales", { question: "What is 2 plus 3?" });
    expect([502, 503]).toContain(res.status);
    const body = await res.text();
    expect(JSON.parse(body).error).toBeString();
    expect(body).not.toContain(TEST_API_KEY);
    expect((await app.request("/healthz")).status).toBe(200);
  });
});

describe("GET /v1/rationales", () => {
  test("streams the stored rationales of a split as JSON lines", async () => {
    const items = [
      { question: "Which animal barks?", choices: milk.choices, answer: "B", dataset: "cqa", split: "test", id: "t-1" },
      { question: "Which room has a bed?", choices: milk.choices, answer: "C", dataset: "cqa", split: "test", id: "t-2" },
    ];
    for (const item of items) expect((await post("/v1/rationales", item)).status).toBe(200);
    const res = await app.request("/v1/rationales?dataset=cqa&split=test");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("ndjson");
    const rows = (await res.text()).trim().split("\n").map((l) => JSON.parse(l) as { itemId: string; split: string });
    expect(rows.map((r) => r.itemId).sort()).toEqual(["t-1", "t-2"]);
    expect(rows.every((r) => r.split === "test")).toBe(true);
  });

  test("query validation and unknown datasets", async () => {
    expect((await app.request("/v1/rationales?dataset=cqa")).status).toBe(400);
    expect((await app.request("/v1/rationales?dataset=..%2Fx&split=test")).status).toBe(400);
    expect((await app.request("/v1/rationales?dataset=nope&split=test")).status).toBe(404);
  });
});

describe("routing and errors", () => {
  test("unknown jobs and routes are 404 JSON", async () => {
    for (const res of [
      await app.request("/v1/jobs/job_doesnotexist"),
      await app.request("/v1/jobs/job_doesnotexist/events"),
      await post("/v1/jobs/job_doesnotexist/cancel", {}),
      await app.request("/v1/nothing-here"),
    ]) {
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: string }).error).toBeString();
    }
  });

  test("a job over an unknown dataset or split is 404; a bad one is 400", async () => {
    expect((await post("/v1/jobs", { dataset: "nope", split: "train" })).status).toBe(404);
    expect((await post("/v1/jobs", { dataset: "cqa", split: "nosuchsplit" })).status).toBe(404);
    expect((await post("/v1/jobs", { dataset: "../cqa", split: "train" })).status).toBe(400);
    expect((await post("/v1/jobs", { dataset: "cqa", split: "train", concurrency: 0 })).status).toBe(400);
  });

  test("JSON Schemas of every request body, generated from the valibot schemas", async () => {
    const all = (await (await app.request("/v1/schema")).json()) as Record<string, { properties: Record<string, unknown>; required?: string[] }>;
    expect(Object.keys(all)).toEqual(expect.arrayContaining(["RationaleRequest", "JobRequest", "RunRequest", "EvaluateRequest", "PredictRequest"]));
    expect(all.PredictRequest.required).toEqual(expect.arrayContaining(["run", "question"]));
    expect(Object.keys(all.RationaleRequest.properties)).toEqual(expect.arrayContaining(["question", "choices", "n"]));
    expect(all.JobRequest.required).toEqual(expect.arrayContaining(["dataset", "split"]));
    const one = (await (await app.request("/v1/schema/JobRequest")).json()) as { properties: Record<string, unknown> };
    expect(one.properties).toEqual(all.JobRequest.properties);
    expect((await app.request("/v1/schema/Nope")).status).toBe(404);
  });
});

describe("bearer token", () => {
  const token = "cotdistill-server-token-for-tests";
  const guarded = () => createApp(stack.runtime.appDeps(token));

  test("every route but /healthz needs it", async () => {
    const app = guarded();
    expect((await app.request("/healthz")).status).toBe(200);
    for (const path of ["/v1/schema", "/v1/jobs", "/v1/rationales?dataset=cqa&split=test", "/v1/nothing-here"]) {
      expect((await app.request(path)).status).toBe(401);
      expect((await app.request(path, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    }
    const posted = await app.request("/v1/rationales", { method: "POST", body: JSON.stringify(milk), headers: { "content-type": "application/json" } });
    expect(posted.status).toBe(401);
  });

  test("the right token opens them", async () => {
    const res = await guarded().request("/v1/schema", { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
  });
});
