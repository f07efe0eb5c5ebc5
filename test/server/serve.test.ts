/**
 * `bun src/cli.ts serve` as a real child process on a free loopback port against the fake teacher: a bulk job is
 * killed with SIGKILL mid-way, the service is restarted on the same database and finishes the job by itself; every
 * item is done exactly once and no finished item is requested again. Progress arrives as SSE over real HTTP. Auth
 * off loopback, and the teacher API key never shows up in responses, logs or the database file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadSplit } from "../../src/data/registry.ts";
import type { JobSnapshot } from "../../src/teacher/jobs.ts";
import { lastQuestion, startFakeOpenAI, type FakeOpenAI } from "../helpers/fake-openai.ts";
import { TEST_API_KEY } from "../helpers/teacher-stack.ts";

const ROOT = resolve(import.meta.dir, "../..");
let fake: FakeOpenAI;
let dir: string;
/** Everything any server printed and every response body read, to search for the API key. */
const seen: string[] = [];

beforeAll(async () => {
  fake = await startFakeOpenAI({ apiKey: TEST_API_KEY, fallback: () => ({ kind: "ok", latencyMs: 40 }) });
  dir = mkdtempSync(join(tmpdir(), "cot-distill-serve-"));
});
afterAll(async () => {
  await fake.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Server {
  url: string;
  proc: ReturnType<typeof Bun.spawn>;
  stop(): Promise<number>;
}

/** Starts serve on port 0 and waits for its "listening on" line; its output is kept in `seen`. */
async function startServe(args: string[], env: Record<string, string> = {}): Promise<Server> {
  const proc = Bun.spawn([process.execPath, "src/cli.ts", "serve", "--port", "0", ...args], {
    cwd: ROOT,
    env: { ...process.env, OPENAI_BASE_URL: fake.baseURL, OPENAI_API_KEY: TEST_API_KEY, TEACHER_MODEL: "gpt-4o-mini", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const collect = async (stream: ReadableStream<Uint8Array>, onText?: (text: string) => void) => {
    const decoder = new TextDecoder();
    const reader = stream.getReader();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      const text = decoder.decode(chunk.value);
      seen.push(text);
      onText?.(text);
    }
  };
  let output = "";
  const url = new Promise<string>((resolve, reject) => {
    void collect(proc.stderr as ReadableStream<Uint8Array>, (text) => {
      output += text;
      const m = /listening on (http:\/\/\S+)/.exec(output);
      if (m) resolve(m[1]);
    }).then(() => reject(new Error(`serve exited before listening:\n${output}`)));
  });
  void collect(proc.stdout as ReadableStream<Uint8Array>);
  const listening = await url;
  return {
    url: listening.replace("0.0.0.0", "127.0.0.1"),
    proc,
    stop: async () => {
      proc.kill("SIGTERM");
      return proc.exited;
    },
  };
}

async function call(url: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { ...init, headers: { "content-type": "application/json", ...init.headers } });
  const text = await res.text();
  seen.push(text);
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

const firstLine = (text: string) => text.split("\n")[0];

describe("serve as a child process", () => {
  test("kill -9 mid-job, restart: the job finishes by itself, every item done exactly once", async () => {
    const dbPath = join(dir, "crash.sqlite");
    const total = 60;
    let server = await startServe(["--db", dbPath]);
    const created = await call(`${server.url}/v1/jobs`, {
      method: "POST",
      body: JSON.stringify({ dataset: "cqa", split: "test", limit: total, concurrency: 4 }),
    });
    expect(created.status).toBe(202);
    const id: string = created.body.id;

    // SSE progress over real HTTP: read events until one shows progress
    const events = await fetch(`${server.url}/v1/jobs/${id}/events`);
    expect(events.headers.get("content-type")).toContain("text/event-stream");
    const reader = events.body!.getReader();
    let sseText = "";
    while (!/event: progress[\s\S]*"done":[1-9]/.test(sseText)) sseText += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();

    await waitFor("15 items done", async () => (await call(`${server.url}/v1/jobs/${id}`)).body.done >= 15);
    server.proc.kill("SIGKILL");
    await server.proc.exited;
    const requestsAtKill = fake.requests.length;

    const atKill = new Database(dbPath);
    const doneAtKill = atKill.query<{ seq: number }, [string]>("SELECT seq FROM job_items WHERE job_id = ? AND state = 'done'").all(id).map((r) => r.seq);
    atKill.close();
    expect(doneAtKill.length).toBeGreaterThanOrEqual(15);
    expect(doneAtKill.length).toBeLessThan(total);

    server = await startServe(["--db", dbPath]);
    await waitFor("the resumed job to finish", async () => (await call(`${server.url}/v1/jobs/${id}`)).body.status === "done");
    const final: JobSnapshot = (await call(`${server.url}/v1/jobs/${id}`)).body;
    expect(final).toMatchObject({ total, done: total, failed: 0, pending: 0 });

    // no finished item was requested again; the others at most once more (the ones in flight at the kill)
    const items = (await loadSplit("cqa", "test")).slice(0, total);
    const afterRestart = fake.requests.slice(requestsAtKill).map((r) => firstLine(lastQuestion(r.body)));
    for (const seq of doneAtKill) expect(afterRestart).not.toContain(firstLine(items[seq].question));
    expect(new Set(afterRestart).size).toBe(afterRestart.length);
    expect(fake.requests.length).toBeLessThanOrEqual(total + 4);

    // exactly one stored rationale per item
    const listing = await fetch(`${server.url}/v1/rationales?dataset=cqa&split=test`);
    type Row = { itemId: string; promptTokens: number; completionTokens: number; costUsd: number };
    const rows = (await listing.text()).trim().split("\n").map((l) => JSON.parse(l) as Row);
    expect(rows.map((r) => r.itemId).sort()).toEqual(items.map((i) => i.id).sort());
    // and the job paid for each exactly as stored: an answer stored at the kill was marked done in the same commit,
    // so none of them comes back as a store hit with its tokens missing from the totals
    expect(final.cached).toBe(0);
    expect(final.promptTokens).toBe(rows.reduce((sum, r) => sum + r.promptTokens, 0));
    expect(final.completionTokens).toBe(rows.reduce((sum, r) => sum + r.completionTokens, 0));
    expect(final.costUsd).toBeCloseTo(rows.reduce((sum, r) => sum + r.costUsd, 0), 12);
    // the calls in flight at the kill were paid but never answered to us: each is counted as interrupted on resume
    // (an upper bound: an item held but not yet sent counts too)
    expect(final.interruptedCalls).toBeGreaterThanOrEqual(fake.requests.length - total);
    expect(await server.stop()).toBe(0);

    // the key is nowhere in what the servers printed or answered, nor in the database files
    const dbBytes = [dbPath, `${dbPath}-wal`].filter(existsSync).map((p) => readFileSync(p).toString("latin1")).join("");
    expect(dbBytes.length).toBeGreaterThan(0);
    expect(dbBytes).not.toContain(TEST_API_KEY);
    expect(seen.join("")).not.toContain(TEST_API_KEY);
    expect(fake.requests.every((r) => r.authorized)).toBe(true); // it did reach the teacher
  }, 60_000);

  test("refuses to bind off loopback without a token", async () => {
    const proc = Bun.spawn([process.execPath, "src/cli.ts", "serve", "--host", "0.0.0.0", "--port", "0", "--db", join(dir, "a.sqlite")], {
      cwd: ROOT,
      env: { ...process.env, COT_DISTILL_TOKEN: "" },
      stderr: "pipe",
    });
    expect(await proc.exited).toBe(1);
    const stderr = await new Response(proc.stderr as ReadableStream).text();
    expect(stderr).toContain("COT_DISTILL_TOKEN");
    expect(stderr.trim().split("\n")).toHaveLength(1);
  });

  test("off loopback with a token: every route but /healthz needs it", async () => {
    const token = "serve-test-token-0123456789";
    const server = await startServe(["--host", "0.0.0.0", "--db", join(dir, "auth.sqlite")], { COT_DISTILL_TOKEN: token });
    try {
      expect((await call(`${server.url}/healthz`)).status).toBe(200);
      for (const path of ["/v1/schema", "/v1/jobs", "/v1/jobs/job_x"]) {
        expect((await call(`${server.url}${path}`)).status).toBe(401);
        expect((await call(`${server.url}${path}`, { headers: { authorization: "Bearer nope" } })).status).toBe(401);
      }
      const posted = await call(`${server.url}/v1/rationales`, { method: "POST", body: JSON.stringify({ question: "What is 1 plus 1?" }) });
      expect(posted.status).toBe(401);
      const authed = await call(`${server.url}/v1/rationales`, {
        method: "POST",
        body: JSON.stringify({ question: "What is 1 plus 1?" }),
        headers: { authorization: `Bearer ${token}` },
      });
      expect(authed.status).toBe(200);
      expect(authed.body.samples[0].label).toBe("2");
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});
