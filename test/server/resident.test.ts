/**
 * The resident inference worker behind /v1/predict and /v1/evaluate, over real HTTP: successive predictions are
 * answered by one long-lived process (no process start, device or load per request) and agree with each other;
 * sampling settings reach the decoder (seeded: reproducible); a worker that dies is replaced on the next request;
 * cancelling a running evaluation kills its worker and the next request still works; a process cap of 1 queues a
 * second request behind the first.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { trainDistillation } from "../../src/distill/train.ts";
import { startRunServer, until, type RunServer } from "../helpers/run-server.ts";
import { isolatedCache, KEYS, syntheticDataset } from "../eval/synthetic.ts";

isolatedCache();
const data = syntheticDataset({ train: 16, test: 40 });
let server: RunServer;
let runId: string;
beforeAll(async () => {
  process.env.COT_DISTILL_DATASETS = data.dir;
  server = await startRunServer({ supervisor: { maxProcesses: 1, maxQueued: 4, killGraceMs: 1_000 } });
  const run = await trainDistillation(
    { dataset: data.name, placement: "after", model: "scratch-micro", epochs: 1, training: { batchSize: 8 }, seed: 0, rationales: data.rationales },
    { outDir: join(server.runsRoot, "resident"), db: server.stack.dbPath, log: () => {} },
  );
  runId = run.runId;
}, 300_000);
afterAll(() => server?.close());

const post = (path: string, body: unknown = {}) =>
  fetch(server.base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const question = { question: `what color is the ${KEYS[1]}`, choices: ["red", "blue", "green", "black"].map((text, i) => ({ label: "ABCD"[i], text })) };
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("resident inference worker", () => {
  test("predictions are served by one long-lived process and agree; sampling is seeded", async () => {
    const first = await post("/v1/predict", { run: runId, ...question });
    expect(first.status).toBe(200);
    const a = await first.json();
    const [pid] = server.supervisor.idleWorkerPids;
    expect(pid).toBeGreaterThan(0);
    const second = await (await post("/v1/predict", { run: runId, ...question })).json();
    expect(second).toEqual(a);
    expect(server.supervisor.idleWorkerPids).toEqual([pid]);
    const sampled = { run: runId, ...question, temperature: 5, seed: 11 };
    const s1 = await (await post("/v1/predict", sampled)).json();
    expect(await (await post("/v1/predict", sampled)).json()).toEqual(s1);
    expect(server.supervisor.idleWorkerPids).toEqual([pid]);
    expect((await post("/v1/predict", { ...sampled, top_p: 0 })).status).toBe(400);
  }, 300_000);

  test("a worker that dies is replaced on the next request", async () => {
    const [pid] = server.supervisor.idleWorkerPids;
    process.kill(pid, "SIGKILL");
    await until(() => (server.supervisor.idleWorkerPids.includes(pid) ? undefined : true), "the server to see the worker gone");
    const response = await post("/v1/predict", { run: runId, ...question });
    expect(response.status).toBe(200);
    const [next] = server.supervisor.idleWorkerPids;
    expect(next).not.toBe(pid);
  }, 300_000);

  test("cancelling a running evaluation kills its worker; a second request waits for the one slot, then runs", async () => {
    // a cold worker (device, kernels, load) keeps the evaluation running long enough to cancel it
    for (const pid of server.supervisor.idleWorkerPids) process.kill(pid, "SIGKILL");
    await until(() => (server.supervisor.idleWorkerPids.length === 0 ? true : undefined), "idle workers to be gone");
    const created = await post("/v1/evaluate", { run: runId, dataset: data.name, limit: 40 });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    const pid = await until(() => server.supervisor.pid(id), "the evaluation to start");
    // the only slot is taken: a prediction queues behind it
    const queued = post("/v1/predict", { run: runId, ...question });
    await until(() => (server.supervisor.pool.waiting === 1 ? true : undefined), "the prediction to queue", 5_000);
    expect(server.supervisor.pool.waiting).toBe(1);
    const cancelled = await post(`/v1/evaluate/${id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(((await cancelled.json()) as { status: string }).status).toBe("cancelled");
    expect(alive(pid)).toBe(false);
    const answer = await queued;
    expect(answer.status).toBe(200);
    expect(server.supervisor.idleWorkerPids).not.toContain(pid);
  }, 300_000);
});
