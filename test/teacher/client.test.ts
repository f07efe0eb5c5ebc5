import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { retryAfterMs, TeacherClient, type ClientEvent, type TeacherClientOptions } from "../../src/teacher/client.ts";
import { TeacherError } from "../../src/teacher/errors.ts";
import { realClock } from "../../src/teacher/limits.ts";
import { startFakeOpenAI } from "../helpers/fake-openai.ts";

const fake = await startFakeOpenAI({ apiKey: "sk-test-client" });
afterAll(() => fake.stop());
beforeEach(() => {
  fake.requests.length = 0;
  fake.maxInFlight = 0;
});

const request = {
  prompt: "Q: Where would you keep milk?\nAnswer Choices: (a) fridge (b) oven (c) shelf\nA:",
  model: "gpt-4o-mini",
  temperature: 0,
  maxTokens: 64,
  n: 1,
};

/** A client whose waits are recorded and skipped (its clock jumps ahead instead), so backoff tests take no real time. */
function client(options: TeacherClientOptions = {}) {
  const sleeps: number[] = [];
  let skipped = 0;
  const events: ClientEvent[] = [];
  const teacher = new TeacherClient({
    baseURL: fake.baseURL,
    apiKey: "sk-test-client",
    timeoutMs: 2000,
    retry: { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 1000 },
    clock: { now: () => realClock.now() + skipped, sleep: async (ms) => void (sleeps.push(ms), (skipped += ms)) },
    onEvent: (e) => void events.push(e),
    ...options,
  });
  return { teacher, sleeps, events };
}

async function failure(promise: Promise<unknown>): Promise<TeacherError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(TeacherError);
    return err as TeacherError;
  }
  throw new Error("expected a TeacherError");
}

describe("TeacherClient against an OpenAI-compatible server", () => {
  test("a healthy call: choices, usage, the key sent as a bearer token, the SDK not retrying on its own", async () => {
    const { teacher } = client();
    const result = await teacher.complete({ ...request, n: 2 });
    expect(result.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(result.choices[0].text).toContain("So the answer is (");
    expect(result.choices[0].finishReason).toBe("stop");
    expect(result.usage!.promptTokens).toBeGreaterThan(0);
    expect(result.attempts).toBe(1);
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0].authorized).toBe(true);
    expect(fake.requests[0].body).toMatchObject({ model: "gpt-4o-mini", temperature: 0, max_tokens: 64, n: 2 });
  });

  test("429 with Retry-After seconds is honoured, then succeeds", async () => {
    const { teacher, sleeps, events } = client();
    fake.script({ kind: "rate_limit", retryAfter: "2" }, { kind: "rate_limit", retryAfterMs: "350" });
    const result = await teacher.complete(request);
    expect(result.attempts).toBe(3);
    expect(fake.requests.map((r) => r.behaviour)).toEqual(["rate_limit", "rate_limit", "ok"]);
    // the backoff waits what the server asked; the limiter's pause for everyone is then already over
    expect(sleeps).toEqual([2000, 350]);
    expect(events.filter((e) => e.type === "retry").map((e) => (e as { kind: string }).kind)).toEqual(["rate_limited", "rate_limited"]);
  });

  test("Retry-After as an HTTP date", () => {
    const now = Date.parse("Fri, 27 Nov 2026 12:00:00 GMT");
    expect(retryAfterMs(new Headers({ "retry-after": "Fri, 27 Nov 2026 12:00:07 GMT" }), now)).toBe(7000);
    expect(retryAfterMs(new Headers({ "retry-after": "Fri, 27 Nov 2026 11:00:00 GMT" }), now)).toBe(0);
    expect(retryAfterMs(new Headers({ "retry-after": "soon" }), now)).toBeNull();
    expect(retryAfterMs(new Headers({ "retry-after": "3", "retry-after-ms": "1500" }), now)).toBe(1500);
    expect(retryAfterMs(new Headers({}), now)).toBeNull();
  });

  test("5xx → exponential backoff with full jitter, within each attempt's cap", async () => {
    const { teacher, sleeps } = client({ random: () => 0.999 });
    fake.script({ kind: "error", status: 500 }, { kind: "error", status: 502 }, { kind: "error", status: 503 });
    const result = await teacher.complete(request);
    expect(result.attempts).toBe(4);
    expect(sleeps).toEqual([99, 199, 399]); // just under 100·2^k
    const low = client({ random: () => 0 });
    fake.script({ kind: "error", status: 500 });
    await low.teacher.complete(request);
    expect(low.sleeps).toEqual([0]);
  });

  test("429 on every attempt → TeacherError rate_limited with HTTP status 503 after maxAttempts", async () => {
    const { teacher } = client();
    fake.script(...Array.from({ length: 4 }, () => ({ kind: "rate_limit" as const, retryAfter: "1" })));
    const err = await failure(teacher.complete(request));
    expect(err).toMatchObject({ kind: "rate_limited", status: 503, attempts: 4, upstreamStatus: 429 });
    expect(fake.requests).toHaveLength(4);
  });

  test("a hanging server → per-request timeout → retried", async () => {
    const { teacher, events } = client({ timeoutMs: 300 });
    fake.script({ kind: "hang" });
    const result = await teacher.complete(request);
    expect(result.attempts).toBe(2);
    expect(events.find((e) => e.type === "retry")).toMatchObject({ kind: "timeout" });
  });

  test("timeouts on every attempt → TeacherError timeout (504)", async () => {
    const { teacher } = client({ timeoutMs: 150, retry: { maxAttempts: 2, baseDelayMs: 1 } });
    fake.script({ kind: "hang" }, { kind: "hang" });
    expect(await failure(teacher.complete(request))).toMatchObject({ kind: "timeout", status: 504, attempts: 2 });
  });

  test("malformed JSON is retried, and fails as bad_response when it persists", async () => {
    const { teacher } = client();
    fake.script({ kind: "malformed" });
    expect((await teacher.complete(request)).attempts).toBe(2);
    fake.script(...Array.from({ length: 4 }, () => ({ kind: "malformed" as const })));
    expect(await failure(teacher.complete(request))).toMatchObject({ kind: "bad_response", status: 502, attempts: 4 });
  });

  test("connection refused is retried and then reported as connection (503)", async () => {
    const closed = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const url = `http://127.0.0.1:${closed.port}/v1`;
    closed.stop(true);
    const { teacher } = client({ baseURL: url, retry: { maxAttempts: 2, baseDelayMs: 1 } });
    expect(await failure(teacher.complete(request))).toMatchObject({ kind: "connection", status: 503, attempts: 2 });
  });

  test("a 4xx other than 429 (bad key) is not retried", async () => {
    const { teacher } = client({ apiKey: "sk-wrong" });
    const err = await failure(teacher.complete(request));
    expect(err).toMatchObject({ kind: "upstream", upstreamStatus: 401, attempts: 1 });
    expect(fake.requests).toHaveLength(1);
  });

  test("truncated and filtered answers come back with their finish reason (the service refuses them)", async () => {
    const { teacher } = client();
    fake.script({ kind: "truncated" }, { kind: "content_filter" });
    expect((await teacher.complete(request)).choices[0].finishReason).toBe("length");
    expect((await teacher.complete(request)).choices[0].finishReason).toBe("content_filter");
  });

  test("maxConcurrency bounds the requests the server sees at once", async () => {
    const { teacher } = client({ limits: { maxConcurrency: 3 } });
    fake.script(...Array.from({ length: 12 }, () => ({ kind: "ok" as const, latencyMs: 20 })));
    await Promise.all(Array.from({ length: 12 }, (_, i) => teacher.complete({ ...request, prompt: `Q: q${i}\nA:` })));
    expect(fake.requests).toHaveLength(12);
    expect(fake.maxInFlight).toBe(3);
    expect(teacher.limiter.maxActive).toBe(3);
  });

  test("requests/min bounds how fast the server sees requests (real time, any sliding window)", async () => {
    const windowMs = 100;
    const perWindow = 2; // 1200/min held over 100 ms windows
    const teacher = new TeacherClient({
      baseURL: fake.baseURL,
      apiKey: "sk-test-client",
      limits: { requestsPerMinute: 1200, windowMs, maxConcurrency: 16 },
    });
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 8 }, (_, i) => teacher.complete({ ...request, prompt: `Q: r${i}\nA:` })));
    const arrivals = fake.requests.map((r) => r.receivedAt - t0).sort((a, b) => a - b);
    // request k cannot leave before floor(k / 2) windows have passed; arrivals only come later than departures
    arrivals.forEach((at, k) => expect(at).toBeGreaterThanOrEqual(Math.floor(k / perWindow) * windowMs - 1));
  });
});
