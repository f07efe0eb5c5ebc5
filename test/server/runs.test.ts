/**
 * The run, evaluation and prediction routes over real HTTP on loopback, with real child processes on the software
 * GPU: a tiny run started through POST /v1/runs, its metrics watched as server-sent events until it ends, then
 * evaluated and asked a question; and every kind of bad input answered 4xx with details.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readEvents, startRunServer, until, type RunServer } from "../helpers/run-server.ts";

let server: RunServer;
beforeAll(async () => {
  server = await startRunServer();
});
afterAll(() => server.close());

const post = (path: string, body: unknown) =>
  fetch(server.base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** A run small enough for the software GPU: 16 questions, 4 per step, one epoch → 4 steps. */
const tinyRun = { name: "http-tiny", dataset: "cqa", model: "scratch-micro", placement: "after", selection: { kind: "shuffled" }, limit: 16, epochs: 1, training: { batchSize: 4, maxSeqLength: 96 } };
const STEPS = 4;

interface Run {
  id: string;
  name: string;
  status: string;
  runDir: string;
  config: { placement: string; selection: { kind: string } };
  finalMetrics: { steps: number; test_accuracy?: number; test_n?: number } | null;
}


describe("a run through HTTP", () => {
  let run: Run;

  test(
    "POST /v1/runs starts training in a child; the metrics stream follows it to the end; GET shows it done",
    async () => {
      const started = await post("/v1/runs", tinyRun);
      expect(started.status).toBe(202);
      run = (await started.json()) as Run;
      expect(run.name).toBe("http-tiny");
      expect(["running", "done"]).toContain(run.status);

      // the server answers other requests while the child trains
      expect((await fetch(`${server.base}/healthz`)).status).toBe(200);

      const stream = await fetch(`${server.base}/v1/runs/${run.id}/metrics`);
      expect(stream.headers.get("content-type")).toContain("text/event-stream");
      const events = await readEvents(stream);
      const metrics = events.filter((e) => e.event === "metrics").map((e) => e.data as { step: number; loss: number });
      expect(metrics.map((m) => m.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
      for (const m of metrics) expect(Number.isFinite(m.loss) && m.loss > 0).toBe(true);
      const end = events.at(-1)!;
      expect(end.event).toBe("end");
      expect((end.data as Run).status).toBe("done");

      const after = (await (await fetch(`${server.base}/v1/runs/${run.id}`)).json()) as Run;
      expect(after.status).toBe("done");
      expect(after.config.placement).toBe("after");
      expect(after.config.selection.kind).toBe("shuffled");
      expect(after.finalMetrics?.steps).toBe(STEPS);
      const logged = readFileSync(join(after.runDir, "metrics.jsonl"), "utf8").trim().split("\n");
      expect(logged).toHaveLength(STEPS);

      const listed = (await (await fetch(`${server.base}/v1/runs?status=done`)).json()) as { runs: Run[] };
      expect(listed.runs.map((r) => r.id)).toContain(run.id);
    },
    300_000,
  );

  test(
    "POST /v1/evaluate → a job whose accuracy recounts from its predictions",
    async () => {
      const created = await post("/v1/evaluate", { run: run.id, dataset: "cqa", split: "test", limit: 4 });
      expect(created.status).toBe(202);
      const { id } = (await created.json()) as { id: string };
      const job = await until(async () => {
        const body = (await (await fetch(`${server.base}/v1/evaluate/${id}`)).json()) as { status: string; error?: string; result?: unknown };
        return body.status === "running" ? undefined : body;
      }, "the evaluation");
      expect(job.error).toBeUndefined();
      expect(job.status).toBe("done");
      const result = job.result as { n: number; accuracy: number; rankAccuracy: number; predictions: Array<{ correct: boolean; rankCorrect: boolean }> };
      expect(result.n).toBe(4);
      expect(result.predictions).toHaveLength(4);
      expect(result.accuracy).toBe(result.predictions.filter((p) => p.correct).length / 4);
      expect(result.rankAccuracy).toBe(result.predictions.filter((p) => p.rankCorrect).length / 4);
      // the evaluation is recorded on the run
      const after = (await (await fetch(`${server.base}/v1/runs/${run.id}`)).json()) as Run;
      expect(after.finalMetrics?.test_accuracy).toBe(result.accuracy);
      expect(after.finalMetrics?.test_n).toBe(4);
    },
    300_000,
  );

  test(
    "POST /v1/predict answers one question with a choice the student ranks first",
    async () => {
      const choices = [
        { label: "A", text: "refrigerator" },
        { label: "B", text: "oven" },
        { label: "C", text: "desert" },
      ];
      const response = await post("/v1/predict", { run: run.name, question: "Where would you keep milk cold?", choices });
      expect(response.status).toBe(200);
      const answer = (await response.json()) as { label: string | null; rankLabel: string; rationale: string | null; choiceLogProbs: Record<string, number> };
      expect(["A", "B", "C"]).toContain(answer.rankLabel);
      const best = Object.entries(answer.choiceLogProbs).sort((a, b) => b[1] - a[1])[0][0];
      expect(answer.rankLabel).toBe(best);
      expect(answer.rationale).toBeNull(); // placement "after": the student answers without reasoning
    },
    300_000,
  );
});

test(
  "POST /v1/predict on a placement=before run returns the student's rationale with its label",
  async () => {
    const started = await post("/v1/runs", { ...tinyRun, name: "http-before", placement: "before", selection: { kind: "full" }, limit: 4 });
    expect(started.status).toBe(202);
    const { id } = (await started.json()) as Run;
    await until(async () => {
      const run = (await (await fetch(`${server.base}/v1/runs/${id}`)).json()) as Run;
      expect(run.status).not.toBe("failed");
      return run.status === "done" ? run : undefined;
    }, "the before run");
    const response = await post("/v1/predict", { run: id, question: "Where would you keep milk cold?", choices: [{ label: "A", text: "fridge" }, { label: "B", text: "oven" }] });
    expect(response.status).toBe(200);
    const answer = (await response.json()) as { rationale: string | null; generated: string };
    expect(typeof answer.rationale).toBe("string");
    expect(answer.generated.length).toBeGreaterThan(0);
  },
  300_000,
);

describe("bad input", () => {
  const issuesOf = async (response: Response) => ((await response.json()) as { error: string; issues?: Array<{ path: string; message: string }> });

  const invalid: Array<[string, Record<string, unknown>, string]> = [
    ["unknown placement", { placement: "middle" }, "placement"],
    ["unknown selection", { selection: { kind: "best" } }, "selection.kind"],
    ["key without k", { selection: { kind: "key" } }, "selection.k"],
    ["p outside [0, 1]", { selection: { kind: "masked", p: 1.5 } }, "selection.p"],
    ["negative p", { selection: { kind: "masked", p: -0.5 } }, "selection.p"],
    ["unknown field", { learningRate: 3 }, "learningRate"],
    ["non-integer k", { selection: { kind: "key", k: 2.5 } }, "selection.k"],
    ["epochs without end", { epochs: 1e300 }, "epochs"],
    ["a seed no generator takes", { seed: 2 ** 40 }, "seed"],
    ["limit beyond any dataset", { limit: 1e12 }, "limit"],
    ["batch size of a million", { training: { batchSize: 1_000_000 } }, "training.batchSize"],
    ["unknown attribution", { selection: { kind: "key", k: 3, attribution: "gut" } }, "selection.attribution"],
    ["a selection for placement none", { placement: "none", selection: { kind: "shuffled" } }, "selection"],
  ];
  for (const [what, patch, path] of invalid) {
    test(`POST /v1/runs: ${what} → 400 with the issue`, async () => {
      const response = await post("/v1/runs", { ...tinyRun, ...patch });
      expect(response.status).toBe(400);
      const body = await issuesOf(response);
      expect(body.issues?.length).toBeGreaterThan(0);
      expect(body.issues!.map((i) => i.path)).toContain(path);
    });
  }

  test(
    "POST /v1/runs: rationales the dataset does not have → 400 from the train command; the refused run leaves no row or folder",
    async () => {
      const folders = () => readdirSync(server.runsRoot).filter((name) => name.startsWith("no-gold"));
      const response = await post("/v1/runs", { ...tinyRun, name: "no-gold", rationales: "gold" });
      expect(response.status).toBe(400);
      const body = await issuesOf(response);
      expect(body.error).toMatch(/dataset "cqa" ships no gold rationales/);
      const runs = (await (await fetch(`${server.base}/v1/runs`)).json()) as { runs: Run[] };
      expect(runs.runs.map((r) => r.name)).not.toContain("no-gold");
      expect(folders()).toEqual([]);
    },
    120_000,
  );

  test("unknown dataset → 404", async () => {
    expect((await post("/v1/runs", { ...tinyRun, dataset: "nope" })).status).toBe(404);
    expect((await post("/v1/evaluate", { run: "x", dataset: "nope" })).status).toBe(404);
  });

  test("a run that does not exist → 404 everywhere", async () => {
    for (const path of ["/v1/runs/run-nope", "/v1/runs/run-nope/metrics", "/v1/evaluate/eval-nope"]) {
      const response = await fetch(server.base + path);
      expect(response.status).toBe(404);
      expect((await issuesOf(response)).error).toMatch(/no (run|evaluation)/);
    }
    expect((await post("/v1/evaluate", { run: "run-nope", dataset: "cqa" })).status).toBe(404);
    expect((await post("/v1/predict", { run: "run-nope", question: "why?" })).status).toBe(404);
  });

  test("evaluate needs exactly one of run and modelDir; a model folder that is not one → 404", async () => {
    expect((await post("/v1/evaluate", { dataset: "cqa" })).status).toBe(400);
    expect((await post("/v1/evaluate", { run: "a", modelDir: "b", dataset: "cqa" })).status).toBe(400);
    expect((await post("/v1/evaluate", { modelDir: "nonexistent/model", dataset: "cqa" })).status).toBe(404);
    expect((await post("/v1/evaluate", { modelDir: "/nonexistent/model", dataset: "cqa" })).status).toBe(400);
  });

  test("predict: an empty question → 400", async () => {
    const response = await post("/v1/predict", { run: "x", question: "   " });
    expect(response.status).toBe(400);
    expect((await issuesOf(response)).issues!.map((i) => i.path)).toContain("question");
  });
});

describe("the metrics stream", () => {
  test("a resumed run that rewrote its log is announced with `restart`, then its lines again, then `end`", async () => {
    const runDir = join(server.runsRoot, "rewritten");
    mkdirSync(runDir, { recursive: true });
    const log = join(runDir, "metrics.jsonl");
    const line = (step: number) => `${JSON.stringify({ step, loss: 5 - step })}\n`;
    writeFileSync(log, [1, 2, 3].map(line).join(""));
    const runs = server.supervisor.runs;
    const run = runs.register({ name: "rewritten", runDir, config: {} });
    runs.markRunning(run.id);

    const arrived: Array<{ event: string; data: unknown }> = [];
    const events = readEvents(await fetch(`${server.base}/v1/runs/${run.id}/metrics`), "end", arrived);
    await until(async () => (arrived.length === 3 ? true : undefined), "steps 1..3");
    writeFileSync(log, line(1)); // resumed from a checkpoint at step 1
    await until(async () => (arrived.length === 5 ? true : undefined), "the restart and step 1");
    appendFileSync(log, line(2));
    runs.markDone(run.id, { steps: 2 });

    const seen = (await events).map((e) => (e.event === "metrics" ? (e.data as { step: number }).step : e.event));
    expect(seen).toEqual([1, 2, 3, "restart", 1, 2, "end"]);
  });
});

describe("auth", () => {
  test("with a token configured, the run routes and the dashboard want it", async () => {
    const { createApp } = await import("../../src/server/app.ts");
    const guarded = createApp({ ...server.stack.runtime.appDeps("s3cret"), supervisor: server.supervisor });
    for (const path of ["/", "/v1/runs", "/v1/experiments", "/v1/evaluate"]) {
      expect((await guarded.request(path)).status).toBe(401);
      expect((await guarded.request(path, { headers: { authorization: "Bearer s3cret" } })).status).toBe(200);
    }
    const post = await guarded.request("/v1/runs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(tinyRun) });
    expect(post.status).toBe(401);
  });
});
