/**
 * Trust boundaries over real HTTP on loopback, against the fault-injecting fake teacher: client-named paths stay
 * inside the server's roots and every refusal reads the same whatever the disk holds (no contents echoed, no
 * exists/doesn't-exist difference); a tokenless server answers only localhost Host names; tokens of any printable
 * characters; no CORS unless configured; an on-demand request has a deadline; batch mode without a Files API fails
 * its job instead of retrying forever; the HTTP server closes half-sent requests.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, readdirSync, realpathSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { teacherClientOptions } from "../../src/commands/teacher-flags.ts";
import { loadSplit } from "../../src/data/registry.ts";
import { createApp } from "../../src/server/app.ts";
import { isLoopbackHost } from "../../src/server/middleware.ts";
import { TeacherClient } from "../../src/teacher/client.ts";
import { TINY_RANDOM_GPT2 } from "../fixtures/reference.ts";
import { runCli } from "../helpers/cli.ts";
import { startRunServer, type RunServer } from "../helpers/run-server.ts";
import { startTeacherStack, TEST_API_KEY } from "../helpers/teacher-stack.ts";

/** Written into every file outside the roots: it must never appear in an answer. */
const SECRET = "root:x:0:0:SECRET-7f3a9c";

let server: RunServer;
let outside: string;
beforeAll(async () => {
  server = await startRunServer({ app: { loopbackHostsOnly: true } });
  const { dirs } = server.roots;
  outside = join(server.stack.dir, "outside");
  mkdirSync(join(outside, "model"), { recursive: true });
  mkdirSync(join(outside, "run"), { recursive: true });
  writeFileSync(join(outside, "model", "config.json"), JSON.stringify({ note: SECRET }));
  writeFileSync(join(outside, "secret.jsonl"), `${SECRET}\n`);
  // symlinks inside the roots that lead out: to something that exists, and to nothing
  symlinkSync(join(outside, "secret.jsonl"), join(dirs.data, "leak.jsonl"));
  symlinkSync(join(outside, "missing.jsonl"), join(dirs.data, "dangling.jsonl"));
  symlinkSync(join(outside, "model"), join(dirs.models, "leak"));
  symlinkSync(join(outside, "no-model"), join(dirs.models, "dangling"));
  symlinkSync(join(outside, "run"), join(dirs.runs, "leak"));
  symlinkSync(join(outside, "no-run"), join(dirs.runs, "dangling"));
  // a file inside the data root that is not JSON lines
  writeFileSync(join(dirs.data, "notes.jsonl"), `${SECRET}\n`);
});
afterAll(() => server.close());

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(server.base + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

const tinyRun = { dataset: "cqa", model: "scratch-micro", placement: "after", selection: { kind: "full" }, limit: 4, epochs: 1, training: { batchSize: 4, maxSeqLength: 64 } };

/** Every way a request can name a path, with the field's value left to the case. */
const FIELDS: Array<[string, string, (ref: string) => unknown]> = [
  ["POST /v1/runs model", "/v1/runs", (ref) => ({ ...tinyRun, model: ref })],
  ["POST /v1/runs rationales", "/v1/runs", (ref) => ({ ...tinyRun, rationales: ref })],
  ["POST /v1/runs attributionModel", "/v1/runs", (ref) => ({ ...tinyRun, selection: { kind: "key", k: 2, attribution: "saliency", attributionModel: ref } })],
  ["POST /v1/evaluate modelDir", "/v1/evaluate", (ref) => ({ modelDir: ref, dataset: "cqa", limit: 1 })],
  ["POST /v1/evaluate run", "/v1/evaluate", (ref) => ({ run: ref, dataset: "cqa", limit: 1 })],
  ["POST /v1/predict run", "/v1/predict", (ref) => ({ run: ref, question: "why?" })],
];

/** What a client can learn from an answer: its status and its text with the name it sent taken out. */
async function seen(response: Response, ref: string): Promise<{ status: number; text: string }> {
  const text = (await response.text()).replaceAll(JSON.stringify(ref).slice(1, -1), "<ref>");
  // beyond the name the client sent itself: no file's contents, no path of the server's
  expect(text).not.toContain(SECRET);
  expect(text).not.toContain(outside);
  expect(text).not.toContain(server.stack.dir);
  return { status: response.status, text };
}

describe("roots: request fields name things inside the server's roots only", () => {
  const state = () => ({ runs: server.supervisor.runs.list().length, folders: readdirSync(server.runsRoot).sort() });

  for (const [what, path, body] of FIELDS) {
    test(`${what}: absolute paths and ".." are a 400; symlinks out of the root read exactly like nothing there`, async () => {
      const before = state();
      const target = what.includes("rationales") ? join(outside, "secret.jsonl") : join(outside, what.includes("run") && !what.includes("Model") ? "run" : "model");
      for (const ref of [target, "/etc/passwd", "../outside/secret.jsonl", "../../etc", "a/../../outside/model", "~/x"]) {
        const answer = await seen(await post(path, body(ref)), ref);
        expect(answer.status).toBe(400);
      }
      const name = what.includes("rationales") ? ["leak.jsonl", "dangling.jsonl", "nothing.jsonl"] : ["leak", "dangling", "nothing-here"];
      const answers = await Promise.all(name.map(async (ref) => seen(await post(path, body(ref)), ref)));
      expect(answers[0].status).toBe(404);
      expect(answers[1]).toEqual(answers[0]);
      expect(answers[2]).toEqual(answers[0]);
      expect(state()).toEqual(before); // nothing left behind
    });
  }

  test("a file inside the data root that is not JSON lines: refused without quoting it, its path named by root", async () => {
    const response = await post("/v1/runs", { ...tinyRun, name: "notes-run", rationales: "notes.jsonl" });
    const answer = await seen(response, "notes.jsonl");
    expect(answer.status).toBe(400);
    expect(answer.text).toContain("<data>/<ref>:1: not valid JSON");
    expect(readdirSync(server.runsRoot).filter((f) => f.startsWith("notes-run"))).toEqual([]);
  }, 120_000);

  test(
    "what IS inside the roots works: a model folder by name, a hub id from the HF cache (only read), a rationale file",
    async () => {
      const { dirs } = server.roots;
      cpSync(TINY_RANDOM_GPT2, join(dirs.models, "tiny"), { recursive: true });
      const snapshot = join(dirs.hfCache, "models--org--tiny", "snapshots", "abc123");
      cpSync(TINY_RANDOM_GPT2, snapshot, { recursive: true });
      mkdirSync(join(dirs.hfCache, "models--org--tiny", "refs"), { recursive: true });
      writeFileSync(join(dirs.hfCache, "models--org--tiny", "refs", "main"), "abc123");
      for (const [modelDir, folder] of [["tiny", join(dirs.models, "tiny")], ["org/tiny", snapshot]]) {
        const created = await post("/v1/evaluate", { modelDir, dataset: "cqa", limit: 1 });
        expect(created.status).toBe(202);
        const { id } = (await created.json()) as { id: string };
        let evaluation: { status: string; error?: string; result?: { n: number } } = { status: "queued" };
        while (evaluation.status === "queued" || evaluation.status === "running") {
          await Bun.sleep(100);
          evaluation = (await (await fetch(`${server.base}/v1/evaluate/${id}`)).json()) as typeof evaluation;
        }
        expect(evaluation.error).toBeUndefined();
        expect(evaluation).toMatchObject({ status: "done", result: { n: 1 } });
        expect(readdirSync(folder).filter((f) => f.startsWith("eval-"))).toEqual([]); // a model folder is only read
      }

      // a run on rationales from a file in the data root trains (and is found by name afterwards)
      const rationales = (await loadSplit("cqa", "train", { excludeDev: true })).slice(0, 4).map((item) => ({ id: item.id, rationale: `Because ${item.question.slice(0, 20)} it fits.` }));
      writeFileSync(join(dirs.data, "mine.jsonl"), rationales.map((r) => JSON.stringify(r)).join("\n") + "\n");
      const started = await post("/v1/runs", { ...tinyRun, name: "from-file", rationales: "mine.jsonl" });
      expect(started.status).toBe(202);
      const { id } = (await started.json()) as { id: string };
      let run: { status: string; config: { rationales: string } } = { status: "running", config: { rationales: "" } };
      while (run.status === "queued" || run.status === "running") {
        await Bun.sleep(200);
        run = (await (await fetch(`${server.base}/v1/runs/${id}`)).json()) as typeof run;
      }
      expect(run.status).toBe("done");
      expect(run.config.rationales).toBe(realpathSync(join(dirs.data, "mine.jsonl")));
    },
    240_000,
  );

  test("GET of a run by a path-like id: the same 404 as any unknown run", async () => {
    for (const ref of ["leak", "dangling", "run-nope"]) {
      const response = await fetch(`${server.base}/v1/runs/${ref}`);
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ error: `no run "${ref}"` });
    }
  });

  test("DELETE of a run whose folder is the runs root itself removes its row, never the root", async () => {
    const rootRun = server.supervisor.runs.register({ name: "cli-run-into-root", runDir: server.runsRoot, config: {} });
    server.supervisor.runs.markDone(rootRun.id, {});
    expect((await fetch(`${server.base}/v1/runs/${rootRun.id}`, { method: "DELETE" })).status).toBe(200);
    expect(server.supervisor.runs.get(rootRun.id)).toBeNull();
    expect(readdirSync(server.runsRoot)).toContain("leak");
  });

  test("a run of the index whose folder lies outside the runs root is not the server's to touch", async () => {
    const elsewhere = server.supervisor.runs.register({ name: "cli-run-elsewhere", runDir: join(outside, "run"), config: {} });
    expect((await fetch(`${server.base}/v1/runs/${elsewhere.id}`)).status).toBe(404);
    expect((await fetch(`${server.base}/v1/runs/${elsewhere.id}`, { method: "DELETE" })).status).toBe(404);
    const listed = (await (await fetch(`${server.base}/v1/runs`)).json()) as { runs: Array<{ id: string }> };
    expect(listed.runs.map((r) => r.id)).not.toContain(elsewhere.id);
    expect(readdirSync(outside)).toContain("run");
    server.supervisor.runs.delete(elsewhere.id);
  });
});

describe("host check (no token, loopback)", () => {
  test("a foreign Host (DNS rebinding) is refused; localhost names and loopback addresses on any port are answered", async () => {
    for (const host of ["evil.example", "evil.example:8787", "127.0.0.1.nip.io", "10.0.0.1", "[::2]:80", "localhost.evil.example"]) {
      const response = await fetch(`${server.base}/v1/runs`, { headers: { host } });
      expect(response.status).toBe(403);
    }
    for (const host of ["localhost", "localhost:1234", "127.0.0.1:9", "127.1.2.3", "[::1]:8787", "app.localhost"]) {
      expect((await fetch(`${server.base}/v1/runs`, { headers: { host } })).status).toBe(200);
    }
    expect(isLoopbackHost("LOCALHOST:80")).toBe(true);
  });

  test("no CORS headers unless origins are configured; then only those", async () => {
    const preflight = { method: "OPTIONS", headers: { origin: "https://page.example", "access-control-request-method": "POST" } };
    const open = await fetch(`${server.base}/v1/runs`, preflight);
    expect(open.headers.get("access-control-allow-origin")).toBeNull();
    const app = createApp({ ...server.stack.runtime.appDeps(), supervisor: server.supervisor, corsOrigins: ["https://dash.example"] });
    const allowed = await app.request("/v1/runs", { method: "OPTIONS", headers: { origin: "https://dash.example", "access-control-request-method": "POST" } });
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://dash.example");
    const other = await app.request("/v1/runs", preflight);
    expect(other.headers.get("access-control-allow-origin")).not.toBe("https://page.example");
  });
});

describe("token", () => {
  test("any printable token works when sent right (hono's bearerAuth refused these with 400)", async () => {
    const token = 'p@ss:w0rd;"with"<odd>{chars}|\\and=%more!';
    const app = createApp({ ...server.stack.runtime.appDeps(token), supervisor: server.supervisor });
    const listen = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
    try {
      const base = `http://127.0.0.1:${listen.port}`;
      expect((await fetch(`${base}/v1/runs`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      expect((await fetch(`${base}/v1/runs`, { headers: { authorization: `Bearer ${token}x` } })).status).toBe(401);
      expect((await fetch(`${base}/v1/runs`)).status).toBe(401);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      listen.stop(true);
    }
  });

  test("serve refuses a short token on a non-loopback bind, and a non-printable one anywhere", () => {
    const short = runCli(["serve", "--host", "0.0.0.0", "--port", "0"], { COT_DISTILL_TOKEN: "short-token" });
    expect(short.code).toBe(1);
    expect(short.stderr).toContain("needs at least 16");
    const bad = runCli(["serve", "--port", "0"], { COT_DISTILL_TOKEN: "has a space in it but is long" });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("printable ASCII");
    const none = runCli(["serve", "--host", "0.0.0.0", "--port", "0"], { COT_DISTILL_TOKEN: "" });
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("without a token");
  });
});

describe("time", () => {
  test("--teacher-timeout / --teacher-retries (or their environment variables) bound one teacher call", async () => {
    expect(teacherClientOptions({ "teacher-timeout": "0.2", "teacher-retries": "1" }, {})).toMatchObject({ timeoutMs: 200, retry: { maxAttempts: 2 } });
    expect(teacherClientOptions({}, { COT_DISTILL_TEACHER_TIMEOUT: "5", COT_DISTILL_TEACHER_RETRIES: "0" })).toMatchObject({ timeoutMs: 5000, retry: { maxAttempts: 1 } });
    expect(() => teacherClientOptions({ "teacher-timeout": "-1" }, {})).toThrow(/teacher-timeout/);
    expect(() => teacherClientOptions({ "teacher-retries": "1.5" }, {})).toThrow(/teacher-retries/);

    const fake = server.stack.fake;
    fake.script({ kind: "hang" }, { kind: "hang" });
    const options = teacherClientOptions({ "teacher-timeout": "0.2", "teacher-retries": "1" }, {});
    const client = new TeacherClient({ ...options, baseURL: fake.baseURL, apiKey: TEST_API_KEY, retry: { ...options.retry, baseDelayMs: 1, maxDelayMs: 5 } });
    const t0 = performance.now();
    const failure = await client.complete({ prompt: "Q: hang\nA:", model: "m", temperature: 0, maxTokens: 8, n: 1 }).catch((err) => err);
    expect(failure).toMatchObject({ kind: "timeout", attempts: 2 });
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  test("an on-demand request past its deadline is a 504 while the teacher hangs", async () => {
    const app = createApp({ ...server.stack.runtime.appDeps(), supervisor: server.supervisor, requestTimeoutMs: 300 });
    server.stack.fake.script({ kind: "hang" });
    const t0 = performance.now();
    const response = await app.request("/v1/rationales", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ question: "Where does a hanging teacher live?", choices: [{ label: "A", text: "here" }, { label: "B", text: "there" }] }),
    });
    expect(response.status).toBe(504);
    expect(((await response.json()) as { error: string }).error).toMatch(/did not answer within 0.3 s/);
    expect(performance.now() - t0).toBeLessThan(2_000);
  });

  test("serve closes connections that never finish their headers, or go silent in a body, and stays up", async () => {
    const dir = server.stack.dir;
    const child = Bun.spawn(
      [process.execPath, "src/cli.ts", "serve", "--port", "0", "--idle-timeout", "1", "--header-timeout", "1", "--db", join(dir, "idle.sqlite")],
      { cwd: join(import.meta.dir, "../.."), env: { ...process.env, OPENAI_BASE_URL: server.stack.fake.baseURL }, stderr: "pipe", stdout: "ignore" },
    );
    try {
      const reader = child.stderr.getReader();
      let text = "";
      while (!/listening on http:\/\/127\.0\.0\.1:(\d+)/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
      const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(text)![1]);
      /** ms until the server closed a connection that sent `payload` (then nothing), or -1 within 15 s. */
      const closedAfter = async (payload: string) => {
        const t0 = performance.now();
        let closed = -1;
        const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, close: () => void (closed = performance.now() - t0) } });
        if (payload) socket.write(payload);
        while (closed < 0 && performance.now() - t0 < 15_000) await Bun.sleep(50);
        socket.end();
        return closed;
      };
      const cases = await Promise.all([
        closedAfter(""), // connects, says nothing
        closedAfter("GET /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"), // half a header
        closedAfter('POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\nContent-Length: 1000\r\n\r\n{"dataset":'), // half a body
      ]);
      for (const ms of cases) {
        expect(ms).toBeGreaterThan(500);
        expect(ms).toBeLessThan(15_000);
      }
      // whole requests still go through the front, keep-alive and streamed answers included
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      const schema = await fetch(`http://127.0.0.1:${port}/v1/schema`);
      expect(Object.keys((await schema.json()) as object)).toContain("RunRequest");
      const big = await fetch(`http://127.0.0.1:${port}/v1/rationales`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ question: "x".repeat(200_000) }) });
      expect(big.status).toBe(400);
    } finally {
      child.kill();
      await child.exited;
    }
  }, 30_000);
});

describe("batch mode", () => {
  test("against an endpoint without the Files API the job fails with the upstream's reason instead of retrying forever", async () => {
    const stack = await startTeacherStack(); // the fake teacher has no /v1/files
    const app = createApp(stack.runtime.appDeps());
    const listen = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
    try {
      const base = `http://127.0.0.1:${listen.port}`;
      const created = await fetch(`${base}/v1/jobs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ dataset: "cqa", split: "test", limit: 5, batch: true }) });
      expect(created.status).toBe(202);
      const { id } = (await created.json()) as { id: string };
      const deadline = Date.now() + 20_000;
      let job: { status: string; failed: number; pending: number } = { status: "running", failed: 0, pending: 5 };
      while (job.status === "running" && Date.now() < deadline) {
        await Bun.sleep(100);
        job = (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as typeof job;
      }
      expect(job).toMatchObject({ status: "done", failed: 5, pending: 0 });
      const errors = stack.runtime.db.query<{ error: string }, [string]>("SELECT DISTINCT error FROM job_items WHERE job_id = ?").all(id);
      expect(errors).toHaveLength(1);
      expect(errors[0].error).toMatch(/batch upload failed.*No route POST \/v1\/files/);
      expect(errors[0].error).not.toContain(TEST_API_KEY);
    } finally {
      listen.stop(true);
      await stack.close();
    }
  }, 30_000);
});
