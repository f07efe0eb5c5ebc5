/**
 * Spend after a crash: items a dead runner still held may each have had a teacher call in flight — paid, never
 * answered to us. The runner that takes the job over counts them (`interruptedCalls`), since their usage cannot be
 * known any more; the totals stay exactly what the stored answers cost.
 */
import { afterEach, expect, test } from "bun:test";
import { hostname } from "node:os";
import { loadSplit } from "../../src/data/registry.ts";
import { startTeacherStack, type TeacherStack } from "../helpers/teacher-stack.ts";

let stack: TeacherStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

test("a take-over counts the items the dead runner held as interrupted calls; a clean run counts none", async () => {
  stack = await startTeacherStack();
  const { jobs } = stack.runtime;
  const items = (await loadSplit("cqa", "test")).slice(0, 10);
  jobs.store.create({ id: "job_crashed", dataset: "cqa", split: "test", mode: "online", params: {}, items });
  const dead = `${hostname()}:2147483646:gone`; // a pid no process has
  expect(jobs.store.takeOver("job_crashed", dead, 60_000, () => false)).toBe(true);
  expect(jobs.store.claim("job_crashed", 4)).toHaveLength(4); // it held four items when it died

  expect(jobs.start("job_crashed")).toBe(true);
  const done = await jobs.settled("job_crashed");
  expect(done).toMatchObject({ status: "done", done: 10, failed: 0, interruptedCalls: 4 });
  expect(stack.fake.requests).toHaveLength(10);

  const clean = await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 12 })).id);
  expect(clean).toMatchObject({ status: "done", interruptedCalls: 0 });
});
