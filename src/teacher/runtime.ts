/**
 * The teacher stack wired once, for `serve`, the `rationales` command, benchmarks and tests: one SQLite database,
 * the client, the TeacherService, the job manager with Batch-API mode, and the HTTP app's dependencies.
 */
import type { Database } from "bun:sqlite";
import { getDataset, loadSplit } from "../data/registry.ts";
import type { AppDeps } from "../server/app.ts";
import { openDatabase } from "../store/db.ts";
import { JobStore } from "../store/jobs.ts";
import { batchRunner } from "./batch.ts";
import { TeacherClient, type TeacherClientOptions } from "./client.ts";
import { JobManager } from "./jobs.ts";
import { TeacherService, type TeacherDefaults } from "./service.ts";

export interface TeacherRuntimeOptions {
  dbPath: string;
  /** baseURL / apiKey / model override OPENAI_BASE_URL / OPENAI_API_KEY / TEACHER_MODEL; limits and retries too. */
  client?: TeacherClientOptions;
  /** Generation defaults of the service (structured mode, stop sequences …). */
  teacherDefaults?: Partial<TeacherDefaults>;
  /** Batch status poll interval (default 30 s). */
  batchPollMs?: number;
  /** A job runner silent this long is presumed dead and its jobs are taken over (default 15 s). */
  staleMs?: number;
}

export interface TeacherRuntime {
  db: Database;
  teacher: TeacherService;
  jobs: JobManager;
  /** What createApp needs, with the bearer token (if any). */
  appDeps(token?: string): AppDeps;
  /** Stops job runners (jobs stay resumable) and closes the database. */
  close(): Promise<void>;
}

export function openTeacherRuntime(options: TeacherRuntimeOptions): TeacherRuntime {
  const db = openDatabase(options.dbPath);
  const client = new TeacherClient(options.client);
  const teacher = new TeacherService({ db, client, defaults: options.teacherDefaults });
  const jobs = new JobManager({
    store: new JobStore(db),
    teacher,
    loadSplit: (dataset, split) => loadSplit(dataset, split),
    batch: batchRunner({ teacher, baseURL: options.client?.baseURL, apiKey: options.client?.apiKey, pollMs: options.batchPollMs }),
    defaultModel: teacher.defaults.model,
    defaultStructured: teacher.defaults.structured,
    defaultConcurrency: client.limiter.options.maxConcurrency,
    staleMs: options.staleMs,
  });
  return {
    db,
    teacher,
    jobs,
    appDeps: (token) => ({
      teacher,
      jobs,
      listRationales: (query) => teacher.store.list(query),
      rationales: teacher.store,
      listFailures: (query) => teacher.store.listFailures(query),
      requireDataset: getDataset,
      token,
    }),
    close: async () => {
      await jobs.close();
      db.close();
    },
  };
}
