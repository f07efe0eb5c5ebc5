/**
 * The whole teacher stack for tests: a fake OpenAI-compatible teacher on loopback (optionally with the fake Batch
 * API), a real SQLite file in a temp dir and the runtime `serve` uses, with short retries and polls.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openTeacherRuntime, type TeacherRuntime, type TeacherRuntimeOptions } from "../../src/teacher/runtime.ts";
import { startFakeOpenAI, type FakeOpenAI, type FakeOpenAIOptions } from "./fake-openai.ts";

/** Distinctive, so a leak is found by grepping responses, logs and the database file for it. */
export const TEST_API_KEY = "sk-cotdistill-test-3f9c2a7e51d04b8f";

export interface TeacherStack {
  dir: string;
  dbPath: string;
  fake: FakeOpenAI;
  runtime: TeacherRuntime;
  /** Another runtime on the same database (a restart, or a second process's view). */
  reopen(options?: Partial<TeacherRuntimeOptions>): TeacherRuntime;
  close(): Promise<void>;
}

export async function startTeacherStack(
  options: { fake?: FakeOpenAIOptions; runtime?: Partial<TeacherRuntimeOptions> } = {},
): Promise<TeacherStack> {
  const dir = mkdtempSync(join(tmpdir(), "cot-distill-t2-"));
  const dbPath = join(dir, "cot-distill.sqlite");
  const fake = await startFakeOpenAI({ apiKey: TEST_API_KEY, ...options.fake });
  const open = (extra: Partial<TeacherRuntimeOptions> = {}) =>
    openTeacherRuntime({
      dbPath,
      batchPollMs: 5,
      staleMs: 2_000,
      ...options.runtime,
      ...extra,
      client: {
        baseURL: fake.baseURL,
        apiKey: TEST_API_KEY,
        retry: { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 2 },
        limits: { maxConcurrency: 16 },
        ...options.runtime?.client,
        ...extra.client,
      },
    });
  const runtimes: TeacherRuntime[] = [open()];
  return {
    dir,
    dbPath,
    fake,
    runtime: runtimes[0],
    reopen: (extra) => {
      const runtime = open(extra);
      runtimes.push(runtime);
      return runtime;
    },
    close: async () => {
      for (const runtime of runtimes) await runtime.close().catch(() => {});
      await fake.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
