/**
 * The supervisor's child processes over real HTTP, with real `train` children on the software GPU: a cap on how
 * many run at once with a queue behind it (429 + Retry-After when that is full too, leaving nothing behind),
 * cancel that stops a run's process within seconds and records it, DELETE that removes row and folder, and the
 * same for evaluations.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { readEvents, startRunServer, until, type RunServer } from "../helpers/run-server.ts";

let server: RunServer;
beforeAll(async () => {
  server = await startRunServer({ supervisor: { maxProcesses: 1, maxQueued: 1, killGraceMs: 2_000 } });
});
afterAll(() => server.close());

const post = (path: string, body?: unknown) =>
  fetch(server.base + path, { method: "POST", headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
const get = async (path: string) => (await fetch(server.base + path)).json() as Promise<Record<string, unknown>>;

/** Trains far longer than the test lasts (4000 steps): only a cancel ends it. */
const longRun = (name: string) => ({ name, dataset: "cqa", model: "scratch-micro", placement: "after", selection: { kind: "full" }, limit: 16, epochs: 1_000, training: { batchSize: 4, maxSeqLength: 64 } });

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}


test(
  "one process at a time: the next run queues, the one after is 429; cancel kills a run's process within seconds and the queued run starts",
  async () => {
    const a = await post("/v1/runs", longRun("long-a"));
    expect(a.status).toBe(202);
    const runA = (await a.json()) as { id: string; status: string; runDir: string };
    expect(runA.status).toBe("running");
    const pidA = server.supervisor.pid(runA.id)!;
    expect(alive(pidA)).toBe(true);

    const b = await post("/v1/runs", longRun("long-b"));
    expect(b.status).toBe(202);
    const runB = (await b.json()) as { id: string; status: string; runDir: string };
    expect(runB.status).toBe("queued");
    expect(server.supervisor.pid(runB.id)).toBeUndefined();

    // the queue is full: refused before anything of the request exists
    const folders = readdirSync(server.runsRoot).sort();
    const rows = server.supervisor.runs.list().length;
    const c = await post("/v1/runs", longRun("long-c"));
    expect(c.status).toBe(429);
    expect(Number(c.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await post("/v1/evaluate", { run: runA.id, dataset: "cqa", limit: 1 })).status).toBe(429);
    expect(readdirSync(server.runsRoot).sort()).toEqual(folders);
    expect(server.supervisor.runs.list().length).toBe(rows);

    // cancel the running run: its process is gone within seconds, its status recorded, its stream ends
    const stream = readEvents(await fetch(`${server.base}/v1/runs/${runA.id}/metrics`));
    const t0 = performance.now();
    const cancelled = await post(`/v1/runs/${runA.id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(((await cancelled.json()) as { status: string }).status).toBe("cancelled");
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(alive(pidA)).toBe(false);
    expect((await get(`/v1/runs/${runA.id}`)).status).toBe("cancelled");
    const end = (await stream).at(-1)!;
    expect(end.event).toBe("end");
    expect((end.data as { status: string }).status).toBe("cancelled");
    expect((await post(`/v1/runs/${runA.id}/cancel`)).status).toBe(409); // nothing left to cancel

    // the freed slot went to the queued run
    const pidB = await until(() => server.supervisor.pid(runB.id), "the queued run to start");
    expect(alive(pidB)).toBe(true);

    // evaluations queue behind it the same way, and cancel at once while queued
    const evaluation = await post("/v1/evaluate", { run: runA.id, dataset: "cqa", limit: 1 });
    expect(evaluation.status).toBe(202);
    const { id: evalId, status } = (await evaluation.json()) as { id: string; status: string };
    expect(status).toBe("queued");
    const evalCancelled = await post(`/v1/evaluate/${evalId}/cancel`);
    expect(((await evalCancelled.json()) as { status: string }).status).toBe("cancelled");
    expect((await fetch(`${server.base}/v1/evaluate/${evalId}`, { method: "DELETE" })).status).toBe(200);
    expect((await fetch(`${server.base}/v1/evaluate/${evalId}`)).status).toBe(404);

    // DELETE a running run: cancelled, then row and folder gone
    const deleted = await fetch(`${server.base}/v1/runs/${runB.id}`, { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect(alive(pidB)).toBe(false);
    expect((await fetch(`${server.base}/v1/runs/${runB.id}`)).status).toBe(404);
    expect(existsSync(runB.runDir)).toBe(false);
    expect(server.supervisor.pool.active).toBe(0);
  },
  300_000,
);
