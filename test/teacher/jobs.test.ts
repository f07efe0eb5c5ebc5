/**
 * Durable bulk jobs in-process against the fake teacher and a real SQLite file: every item done exactly once,
 * stored answers never requested again, take-over of a dead runner's job (claimed items retried, finished ones not),
 * cancellation, failures recorded, and progress as server-sent events.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { loadSplit } from "../../src/data/registry.ts";
import { createApp } from "../../src/server/app.ts";
import type { JobSnapshot } from "../../src/teacher/jobs.ts";
import { lastQuestion } from "../helpers/fake-openai.ts";
import { startTeacherStack, TEST_API_KEY, type TeacherStack } from "../helpers/teacher-stack.ts";

const ROOT = resolve(import.meta.dir, "../..");
let stack: TeacherStack;
beforeEach(async () => {
  stack = await startTeacherStack();
});
afterEach(() => stack.close());

/** How many chat requests the fake saw per question text. */
function requestsPerQuestion(stack: TeacherStack, from = 0): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of stack.fake.requests.slice(from)) {
    const q = lastQuestion(r.body).split("\n")[0];
    counts.set(q, (counts.get(q) ?? 0) + 1);
  }
  return counts;
}

const firstLine = (text: string) => text.split("\n")[0];

async function runToEnd(stack: TeacherStack, id: string): Promise<JobSnapshot> {
  return stack.runtime.jobs.settled(id);
}

describe("online jobs", () => {
  test("every item of the split is asked once and counted; a second job is served from the store", async () => {
    const { jobs } = stack.runtime;
    const created = await jobs.create({ dataset: "cqa", split: "test", limit: 25, concurrency: 5 });
    expect(created.total).toBe(25);
    const done = await runToEnd(stack, created.id);
    expect(done).toMatchObject({ status: "done", total: 25, done: 25, cached: 0, failed: 0, pending: 0 });
    expect(done.tokens).toBeGreaterThan(0);
    expect(done.tokens).toBe(done.promptTokens + done.completionTokens);

    const items = (await loadSplit("cqa", "test")).slice(0, 25);
    const asked = requestsPerQuestion(stack);
    expect(asked.size).toBe(25);
    for (const item of items) expect(asked.get(firstLine(item.question))).toBe(1);
    expect(stack.fake.maxInFlight).toBeLessThanOrEqual(5);

    const before = stack.fake.requests.length;
    const again = await runToEnd(stack, (await jobs.create({ dataset: "cqa", split: "test", limit: 25 })).id);
    expect(again).toMatchObject({ status: "done", done: 25, cached: 25, tokens: 0, costUsd: 0 });
    expect(stack.fake.requests.length).toBe(before);
  });

  test("failed items are recorded, the rest finish", async () => {
    stack.fake.script({ kind: "content_filter" }, { kind: "truncated" });
    const { jobs } = stack.runtime;
    const snap = await runToEnd(stack, (await jobs.create({ dataset: "svamp", split: "test", limit: 8, concurrency: 1 })).id);
    expect(snap).toMatchObject({ status: "done", done: 6, failed: 2, pending: 0 });
    expect(jobs.store.failures(snap.id).map((f) => f.error)).toEqual([expect.stringContaining("content_filter"), expect.stringContaining("length")]);
    expect(stack.runtime.teacher.store.countFailures()).toBeGreaterThanOrEqual(2);
  });

  test("retrying a finished job's failures asks again for those items only", async () => {
    stack.fake.script({ kind: "error", status: 500 }, { kind: "error", status: 500 }); // item 0: both attempts fail
    const { jobs } = stack.runtime;
    const app = createApp(stack.runtime.appDeps());
    const first = await jobs.settled((await jobs.create({ dataset: "svamp", split: "test", limit: 5, concurrency: 1 })).id);
    expect(first).toMatchObject({ status: "done", done: 4, failed: 1 });
    const before = stack.fake.requests.length;
    const retried = await app.request(`/v1/jobs/${first.id}/retry`, { method: "POST" });
    expect(retried.status).toBe(202);
    const final = await jobs.settled(first.id);
    expect(final).toMatchObject({ status: "done", done: 5, failed: 0 });
    expect(stack.fake.requests.length - before).toBe(1);
    expect((await app.request(`/v1/jobs/${first.id}/retry`, { method: "POST" })).status).toBe(409); // nothing failed now
  });

  test("an item whose done-mark fails is not stored either; retried, it is paid and counted once", async () => {
    const { jobs, db, teacher } = stack.runtime;
    // the job-item update fails inside the transaction that stores the answer (a real SQLite error, this connection only)
    db.exec(`CREATE TEMP TRIGGER fail_done BEFORE UPDATE OF state ON job_items WHEN NEW.state = 'done' AND NEW.seq = 3
             BEGIN SELECT RAISE(ABORT, 'injected: job item update failed'); END`);
    const items = (await loadSplit("cqa", "test")).slice(0, 6);
    const first = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 6, concurrency: 2 })).id);
    expect(first).toMatchObject({ status: "done", done: 5, failed: 1 });
    expect(jobs.store.failures(first.id)).toEqual([{ seq: 3, error: expect.stringContaining("injected") }]);
    expect(stack.fake.requests).toHaveLength(6);
    expect(teacher.store.forItem("cqa", items[3].id)).toEqual([]); // rolled back with the failed mark

    db.exec("DROP TRIGGER fail_done");
    jobs.retryFailed(first.id);
    const final = await jobs.settled(first.id);
    expect(final).toMatchObject({ status: "done", done: 6, cached: 0, failed: 0 });
    expect(requestsPerQuestion(stack).get(firstLine(items[3].question))).toBe(2); // the lost answer, asked again once
    // the job's totals are exactly what the stored answers cost: nothing missing, nothing counted twice
    const stored = items.flatMap((item) => teacher.store.forItem("cqa", item.id));
    expect(stored).toHaveLength(6);
    expect(final.promptTokens).toBe(stored.reduce((sum, r) => sum + r.promptTokens!, 0));
    expect(final.completionTokens).toBe(stored.reduce((sum, r) => sum + r.completionTokens!, 0));
    expect(final.costUsd).toBeCloseTo(stored.reduce((sum, r) => sum + r.costUsd!, 0), 12);
  });

  test("two jobs over the same items at once pay for each item once between them", async () => {
    const slow = await startTeacherStack({ fake: { fallback: () => ({ kind: "ok", latencyMs: 20 }) } });
    try {
      const { jobs, teacher } = slow.runtime;
      const request = { dataset: "cqa", split: "test", limit: 20, concurrency: 4 };
      const [a, b] = await Promise.all([jobs.create(request), jobs.create(request)]);
      const [doneA, doneB] = await Promise.all([jobs.settled(a.id), jobs.settled(b.id)]);
      expect(slow.fake.requests).toHaveLength(20);
      expect([doneA.done, doneB.done]).toEqual([20, 20]);
      // every item paid by one job and a store hit or a shared call for the other (the first round of the second
      // job always waits on the first job's calls: both start at once)
      expect(doneA.cached + doneB.cached).toBe(20);
      const stored = await Array.fromAsync(teacher.store.list({ dataset: "cqa", split: "test" }));
      expect(doneA.tokens + doneB.tokens).toBe(stored.reduce((sum, r) => sum + r.promptTokens! + r.completionTokens!, 0));
    } finally {
      await slow.close();
    }
  });

  test("cancel stops a job: no new requests after it, status cancelled, the rest left pending", async () => {
    const slow = await startTeacherStack({ fake: { fallback: () => ({ kind: "ok", latencyMs: 30 }) } });
    try {
      const { jobs, db } = slow.runtime;
      const walThreshold = () => db.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint;
      const idleThreshold = walThreshold();
      const job = await jobs.create({ dataset: "cqa", split: "test", limit: 200, concurrency: 2 });
      while (jobs.require(job.id).done < 4) await Bun.sleep(10);
      expect(walThreshold()).toBeGreaterThan(idleThreshold); // checkpoints are the worker thread's while a job runs
      const cancelled = jobs.cancel(job.id);
      expect(cancelled.status).toBe("cancelled");
      await jobs.settled(job.id);
      expect(walThreshold()).toBe(idleThreshold); // and the writers' own again after
      const seen = slow.fake.requests.length;
      await Bun.sleep(100);
      expect(slow.fake.requests.length).toBe(seen);
      const final = jobs.require(job.id);
      expect(final.pending).toBeGreaterThan(0);
      expect(final.done + final.pending + final.failed).toBe(200);
    } finally {
      await slow.close();
    }
  });
});

describe("crash and take-over", () => {
  test("a cancel from another process stops the runner at its next heartbeat", async () => {
    const slow = await startTeacherStack({ fake: { fallback: () => ({ kind: "ok", latencyMs: 20 }) }, runtime: { staleMs: 300 } });
    try {
      const job = await slow.runtime.jobs.create({ dataset: "cqa", split: "test", limit: 300, concurrency: 2 });
      while (slow.runtime.jobs.require(job.id).done < 2) await Bun.sleep(5);
      const other = slow.reopen();
      expect(other.jobs.cancel(job.id).status).toBe("cancelled");
      await slow.runtime.jobs.settled(job.id);
      const seen = slow.fake.requests.length;
      await Bun.sleep(150);
      expect(slow.fake.requests.length).toBe(seen);
      expect(other.jobs.require(job.id).pending).toBeGreaterThan(0);
    } finally {
      await slow.close();
    }
  });

  test("a dead runner's job is resumed: finished items are never asked again, claimed ones are retried once", async () => {
    const { jobs } = stack.runtime;
    // A job enumerated but never run here (as if the process that created it died at once): fake a dead holder.
    const items = (await loadSplit("cqa", "test")).slice(100, 130);
    const id = "job_crashtest";
    jobs.store.create({ id, dataset: "cqa", split: "test", mode: "online", params: { concurrency: 4 }, items });
    stack.runtime.db.prepare("UPDATE jobs SET runner = 'elsewhere:1:dead', heartbeat = 0 WHERE id = ?").run(id);

    // The dead runner had finished 10 items (answers stored and marked done) and claimed 3 more.
    for (let seq = 0; seq < 10; seq++) {
      const claimed = jobs.store.claimNext(id)!;
      const { samples } = await stack.runtime.teacher.rationales({ item: { ...claimed.item }, params: { model: jobs.store.get(id)!.params.model } });
      jobs.store.markDone(id, claimed.seq, { cached: false, promptTokens: 1, completionTokens: 1, costUsd: 0 });
      expect(samples[0].fromStore).toBe(false);
    }
    for (let k = 0; k < 3; k++) jobs.store.claimNext(id);
    const askedBefore = stack.fake.requests.length;
    expect(askedBefore).toBe(10);

    // The new process: its manager adopts the job because the old holder's heartbeat is stale.
    const restarted = stack.reopen();
    expect(restarted.jobs.resumeAll()).toEqual([id]);
    const final = await restarted.jobs.settled(id);
    expect(final).toMatchObject({ status: "done", total: 30, done: 30, failed: 0, pending: 0 });

    const after = requestsPerQuestion(stack, askedBefore);
    for (const item of items.slice(0, 10)) expect(after.has(firstLine(item.question))).toBe(false);
    for (const item of items.slice(10)) expect(after.get(firstLine(item.question))).toBe(1);
    const states = restarted.db.query<{ state: string; n: number }, [string]>("SELECT state, count(*) AS n FROM job_items WHERE job_id = ? GROUP BY state").all(id);
    expect(states).toEqual([{ state: "done", n: 30 }]);
  });

  test("a live holder's job is not taken over", async () => {
    const { jobs } = stack.runtime;
    const items = (await loadSplit("cqa", "test")).slice(0, 3);
    jobs.store.create({ id: "job_held", dataset: "cqa", split: "test", mode: "online", params: {}, items });
    // held by a live process on this host (this test process's parent pid stands in for it)
    stack.runtime.db.prepare("UPDATE jobs SET runner = ?, heartbeat = ? WHERE id = 'job_held'").run(`${hostname()}:${process.ppid}:x`, Date.now());
    expect(stack.reopen().jobs.resumeAll()).toEqual([]);
    expect(stack.fake.requests.length).toBe(0);
  });
});

describe("progress events", () => {
  test("GET /v1/jobs/:id/events streams progress then one end event with the final counts", async () => {
    // 15 rounds of 20 ms: the job outlasts the 200 ms between snapshots, so more than one progress event comes
    const slow = await startTeacherStack({ fake: { fallback: () => ({ kind: "ok", latencyMs: 20 }) } });
    try {
      const app = createApp(slow.runtime.appDeps());
      const created = await app.request("/v1/jobs", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ dataset: "cqa", split: "train", limit: 30, concurrency: 2 }),
      });
      expect(created.status).toBe(202);
      const { id } = (await created.json()) as { id: string };
      const res = await app.request(`/v1/jobs/${id}/events`);
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      const events = parseSse(await res.text());
      const progress = events.filter((e) => e.event === "progress").map((e) => e.data.done);
      expect(progress.length).toBeGreaterThan(1);
      expect(progress).toEqual([...progress].sort((a, b) => a - b));
      expect(events.at(-1)).toMatchObject({ event: "end", data: { status: "done", done: 30 } });
      expect(events.filter((e) => e.event === "end")).toHaveLength(1);
    } finally {
      await slow.close();
    }
  });
});

function parseSse(text: string): { event: string; data: JobSnapshot }[] {
  return text
    .split("\n\n")
    .filter((block) => block.includes("data:"))
    .map((block) => {
      const field = (name: string) => block.split("\n").find((l) => l.startsWith(`${name}:`))?.slice(name.length + 1).trim() ?? "";
      return { event: field("event"), data: JSON.parse(field("data")) as JobSnapshot };
    });
}

describe("rationales command", () => {
  // async spawn: the fake teacher lives in this process and must keep answering while the CLI runs
  const cli = async (args: string[]) => {
    const proc = Bun.spawn([process.execPath, "src/cli.ts", "rationales", "--db", stack.dbPath, ...args], {
      cwd: ROOT,
      env: { ...process.env, OPENAI_BASE_URL: stack.fake.baseURL, OPENAI_API_KEY: TEST_API_KEY },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stdout, stderr };
  };

  test("runs a job with a progress line and a summary; a second run is all from the store", async () => {
    await stack.runtime.close(); // the CLI process is the only one on this database
    const first = await cli(["--dataset", "svamp", "--split", "test", "--limit", "12", "--concurrency", "3"]);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/svamp\/test 12\/12 .*done 12 .*failed 0 .*tokens \d+ .*cost \$[\d.]+ .*ETA/);
    expect(first.stderr).toMatch(/job job_\S+ done: 12\/12 done/);
    expect(stack.fake.requests).toHaveLength(12);

    const second = await cli(["--dataset", "svamp", "--split", "test", "--limit", "12", "--json"]);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ status: "done", done: 12, cached: 12, tokens: 0 });
    expect(stack.fake.requests).toHaveLength(12);
    expect(first.stdout + first.stderr + second.stdout + second.stderr).not.toContain(TEST_API_KEY);
  });

  test("--import-palm loads the shipped rationales once", async () => {
    await stack.runtime.close();
    const first = JSON.parse((await cli(["--import-palm", "--dataset", "cqa", "--split", "test", "--json"])).stdout);
    expect(first.items).toBe(1221);
    expect(first.inserted + first.unanswered).toBe(1221);
    const again = JSON.parse((await cli(["--import-palm", "--dataset", "cqa", "--split", "test", "--json"])).stdout);
    expect(again).toMatchObject({ inserted: 0, duplicates: first.inserted });
    expect(stack.fake.requests).toHaveLength(0);
  });

  test("bad input: one readable line, exit 1", async () => {
    for (const args of [["--dataset", "../x", "--split", "test"], ["--split", "test"], ["--dataset", "nope", "--split", "test"], ["--resume", "job_nope"], ["--dataset", "cqa", "--split", "test", "--limit", "0"]]) {
      const run = await cli(args);
      expect(run.code).toBe(1);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toStartWith("cot-distill: ");
    }
  });
});
