/**
 * Batch-API mode against the in-memory Files + Batches fake mounted on the fake teacher: one batch per job, answers
 * ingested under the same keys as the online path, failures recorded, and resumable after a restart without a second
 * batch — even when the crash fell between creating the batch and saving its id.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { loadSplit } from "../../src/data/registry.ts";
import { customId, parseCustomId } from "../../src/teacher/batch.ts";
import { teacherItem } from "../../src/teacher/jobs.ts";
import { fakeBatches, type FakeBatchesOptions } from "../helpers/fake-batches.ts";
import { startTeacherStack, TEST_API_KEY, type TeacherStack } from "../helpers/teacher-stack.ts";

let stack: TeacherStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

async function withBatches(options: FakeBatchesOptions = {}) {
  const batches = fakeBatches(options);
  const started = await startTeacherStack({ fake: { extend: batches.extend } });
  stack = started;
  return { state: batches.state, stack: started };
}

test("custom ids round-trip", () => {
  expect(parseCustomId(customId("job_abc", 17, 2))).toEqual({ jobId: "job_abc", seq: 17, sampleIndex: 2 });
  expect(parseCustomId("garbage")).toBeNull();
});

describe("batch jobs", () => {
  test("one batch answers every sample; results land in the store under the online path's keys", async () => {
    const { state, stack } = await withBatches();
    const { jobs, teacher } = stack.runtime;
    const job = await jobs.create({ dataset: "cqa", split: "test", limit: 12, n: 2, temperature: 0.7, batch: true });
    const done = await jobs.settled(job.id);
    expect(done).toMatchObject({ mode: "batch", status: "done", total: 12, done: 12, failed: 0, pending: 0, cached: 0 });
    expect(done.tokens).toBeGreaterThan(0);
    expect(state.created).toBe(1);
    expect(done.batch).toMatchObject({ state: "completed", batchId: expect.stringMatching(/^batch-/) });
    expect(state.answered).toHaveLength(24);
    expect(new Set(state.answered).size).toBe(24);
    expect(stack.fake.requests).toHaveLength(0); // nothing went through the online endpoint

    // the online path now finds every sample stored: no chat request
    const items = (await loadSplit("cqa", "test")).slice(0, 12);
    for (const item of items) {
      const { samples } = await teacher.rationales({ item: teacherItem(item), params: { model: done.params.model, n: 2, temperature: 0.7 } });
      expect(samples.map((s) => s.fromStore)).toEqual([true, true]);
      expect(samples.every((s) => s.rationale.length > 0)).toBe(true);
    }
    expect(stack.fake.requests).toHaveLength(0);

    // a second batch job over the same items sends nothing
    const again = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 12, n: 2, temperature: 0.7, batch: true })).id);
    expect(again).toMatchObject({ status: "done", done: 12, cached: 12 });
    expect(state.created).toBe(1);
  });

  test("failed lines of the error file are recorded; their items fail, the others are done", async () => {
    const { state, stack } = await withBatches({ failCustomIds: (id) => parseCustomId(id)!.seq % 4 === 0 });
    const { jobs, teacher } = stack.runtime;
    const snap = await jobs.settled((await jobs.create({ dataset: "svamp", split: "test", limit: 8, batch: true })).id);
    expect(snap).toMatchObject({ status: "done", done: 6, failed: 2, pending: 0 });
    expect(jobs.store.failures(snap.id).map((f) => f.seq)).toEqual([0, 4]);
    expect(teacher.store.countFailures()).toBe(2);
    expect(state.answered).toHaveLength(8);
  });

  test("a restart picks the batch up where it was: no second batch, every item done once", async () => {
    const { state, stack } = await withBatches({ pollsToComplete: 1_000_000 });
    const { jobs } = stack.runtime;
    const job = await jobs.create({ dataset: "cqa", split: "test", limit: 10, batch: true });
    while (!jobs.store.getBatch(job.id)?.batchId) await Bun.sleep(5);
    const batchId = jobs.store.getBatch(job.id)!.batchId!;
    await stack.runtime.close(); // shutdown mid-batch: the job stays running in the database

    state.batches.get(batchId)!.polls = 1_000_000 - 2; // the remote batch finishes soon
    const restarted = stack.reopen();
    expect(restarted.jobs.resumeAll()).toEqual([job.id]);
    const done = await restarted.jobs.settled(job.id);
    expect(done).toMatchObject({ status: "done", done: 10, pending: 0 });
    expect(state.created).toBe(1);
    expect(state.answered).toHaveLength(10);
  });

  test("a crash between creating the batch and saving its id adopts that batch instead of paying twice", async () => {
    const { state, stack } = await withBatches({ pollsToComplete: 1_000_000 });
    const { jobs } = stack.runtime;
    const job = await jobs.create({ dataset: "cqa", split: "test", limit: 6, batch: true });
    while (!jobs.store.getBatch(job.id)?.batchId) await Bun.sleep(5);
    await stack.runtime.close();
    const restarted = stack.reopen();
    const saved = restarted.jobs.store.getBatch(job.id)!;
    restarted.jobs.store.saveBatch(job.id, { ...saved, batchId: null, state: "uploaded" }); // as if never saved
    state.batches.get(saved.batchId!)!.polls = 1_000_000 - 2;

    restarted.jobs.resumeAll();
    const done = await restarted.jobs.settled(job.id);
    expect(done).toMatchObject({ status: "done", done: 6 });
    expect(state.created).toBe(1);
    expect(restarted.jobs.store.getBatch(job.id)!.batchId).toBe(saved.batchId);
  });

  test("a refused upload fails the job's items with the upstream's reason (no key in it) instead of retrying forever; retry-failed tries again", async () => {
    const { state, stack } = await withBatches({
      rejectUploads: { status: 401, message: `Incorrect API key provided: ${TEST_API_KEY}.` },
    });
    const { jobs, db } = stack.runtime;
    const snap = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 3, batch: true })).id);
    expect(snap).toMatchObject({ status: "done", failed: 3, pending: 0, done: 0 });
    expect(state.created).toBe(0);
    const errors = db.query<{ error: string }, [string]>("SELECT DISTINCT error FROM job_items WHERE job_id = ?").all(snap.id).map((r) => r.error);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^batch upload failed.*401/);
    expect(errors[0]).not.toContain(TEST_API_KEY);
    // the failures are retryable like any other: the job runs again (and fails again, the upload still refused)
    jobs.retryFailed(snap.id);
    expect(await jobs.settled(snap.id)).toMatchObject({ status: "done", failed: 3 });
  });

  test("cancelling a batch job cancels the remote batch", async () => {
    const { state, stack } = await withBatches({ pollsToComplete: 1_000_000 });
    const { jobs } = stack.runtime;
    const job = await jobs.create({ dataset: "cqa", split: "test", limit: 4, batch: true });
    while (!jobs.store.getBatch(job.id)?.batchId) await Bun.sleep(5);
    jobs.cancel(job.id);
    await jobs.settled(job.id);
    const batchId = jobs.store.getBatch(job.id)!.batchId!;
    expect(state.batches.get(batchId)!.status).toBe("cancelled");
    expect(jobs.require(job.id)).toMatchObject({ status: "cancelled", done: 0, pending: 4 });
  });
});
