/**
 * A database as the version before answer validation wrote it (its exact CREATE TABLE statements, no reasoning
 * columns, no failure kinds, no schema_migrations) opened by today's code: the new columns are added, label-less and
 * empty teacher answers move to rationale_failures with their raw text, the job items they settled become failed
 * with the reason (so retry-failed asks again), good answers and imports stay, and a second open changes nothing.
 */
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { JobStore } from "../../src/store/jobs.ts";
import { RationaleStore } from "../../src/store/rationales.ts";

const dir = mkdtempSync(join(tmpdir(), "cot-migrate-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OLD_SCHEMA = `
  CREATE TABLE rationales (
    key TEXT PRIMARY KEY, dataset TEXT, split TEXT, item_id TEXT, question TEXT NOT NULL, choices TEXT, answer TEXT,
    sample_index INTEGER NOT NULL, model TEXT NOT NULL, template TEXT NOT NULL, params TEXT NOT NULL,
    rationale TEXT NOT NULL, label TEXT, agrees INTEGER, raw_completion TEXT NOT NULL, prompt_tokens INTEGER,
    completion_tokens INTEGER, latency_ms REAL, cost_usd REAL,
    source TEXT NOT NULL CHECK (source IN ('teacher', 'import')), created_at INTEGER NOT NULL
  );
  CREATE TABLE rationale_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, dataset TEXT, split TEXT, item_id TEXT,
    question TEXT NOT NULL, sample_index INTEGER NOT NULL, model TEXT NOT NULL, template TEXT NOT NULL,
    params TEXT NOT NULL, kind TEXT NOT NULL, upstream_status INTEGER, message TEXT NOT NULL, raw_completion TEXT,
    attempts INTEGER NOT NULL, created_at INTEGER NOT NULL
  );
  CREATE TABLE jobs (
    id TEXT PRIMARY KEY, dataset TEXT NOT NULL, split TEXT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('online', 'batch')), params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'cancelled')), total INTEGER NOT NULL, runner TEXT,
    heartbeat INTEGER, created_at INTEGER NOT NULL, finished_at INTEGER
  );
  CREATE TABLE job_items (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, seq INTEGER NOT NULL, item TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'claimed', 'done', 'failed')),
    cached INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0, error TEXT,
    PRIMARY KEY (job_id, seq)
  );`;

const choices = JSON.stringify([
  { label: "A", text: "desert" },
  { label: "B", text: "sea" },
  { label: "C", text: "mine" },
]);

function oldRow(db: Database, id: string, raw: string, rationale: string, label: string | null, source = "teacher") {
  db.query(
    `INSERT INTO rationales (key, dataset, split, item_id, question, choices, answer, sample_index, model, template, params,
       rationale, label, agrees, raw_completion, prompt_tokens, completion_tokens, latency_ms, cost_usd, source, created_at)
     VALUES (?, 'cqa', 'train', ?, 'Where do gulls live?', ?, 'B', 0, 'gpt-4o-mini', 'cqa-cot@1+abcdef12', '{}',
       ?, ?, ?, ?, 100, 20, 5, 0.0001, ?, 1)`,
  ).run(`key-${id}`, id, choices, rationale, label, label === null ? 0 : Number(label === "B"), raw, source);
}

test("an old database is migrated on open: columns added, bad answers moved out, their job items failed", () => {
  const path = join(dir, "old.sqlite");
  const old = new Database(path);
  old.exec(OLD_SCHEMA);
  oldRow(old, "q1", "Gulls live near water. So the answer is (b).", "Gulls live near water.", "B");
  oldRow(old, "q2", "", "", null);
  oldRow(old, "q3", "I'm sorry, but I can't help with that.", "I'm sorry, but I can't help with that.", null);
  oldRow(old, "q4", "Gulls live near water. Therefore, the answer is sea.", "Gulls live near water. Therefore,", null);
  oldRow(old, "q5", "No answer here.", "No answer here.", null, "import"); // imports are left as their files gave them
  old.query("INSERT INTO jobs (id, dataset, split, mode, params, status, total, created_at) VALUES ('job_old', 'cqa', 'train', 'online', '{\"model\":\"gpt-4o-mini\"}', 'done', 4, 1)").run();
  for (const [seq, id] of ["q1", "q2", "q3", "q4"].entries()) {
    old.query("INSERT INTO job_items (job_id, seq, item, state, prompt_tokens) VALUES ('job_old', ?, ?, 'done', 100)").run(seq, JSON.stringify({ id, dataset: "cqa" }));
  }
  old.close();

  const db = openDatabase(path);
  const store = new RationaleStore(db);
  expect(store.get("key-q1")).toMatchObject({ label: "B", rationale: "Gulls live near water.", reasoning: null, reasoningTokens: null });
  expect(store.get("key-q2")).toBeNull();
  expect(store.get("key-q3")).toBeNull();
  // stored with label null by the old parser; today's reads "the answer is sea" as B, so it is repaired, not moved
  expect(store.get("key-q4")).toMatchObject({ label: "B", rationale: "Gulls live near water.", agrees: true });
  expect(store.get("key-q5")).toMatchObject({ label: null, source: "import" });
  expect(store.failures().map((f) => [f.itemId, f.kind, f.rawCompletion])).toEqual([
    ["q2", "empty", ""],
    ["q3", "refusal", "I'm sorry, but I can't help with that."],
  ]);
  const jobs = new JobStore(db);
  expect(jobs.counts("job_old")).toMatchObject({ done: 2, failed: 2, failuresByKind: { empty: 1, refusal: 1 }, promptTokens: 400 });
  expect(jobs.failures("job_old").map((f) => f.seq)).toEqual([1, 2]);
  db.close();

  // once only: a second open moves and rewrites nothing
  const again = openDatabase(path);
  expect(new RationaleStore(again).failures()).toHaveLength(2);
  expect(again.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM schema_migrations").get()!.n).toBeGreaterThanOrEqual(3);
  again.close();
});
