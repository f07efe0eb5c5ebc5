/**
 * Distillation runs: one row per training run (what was asked for, where its files are, how it went). The run
 * folder holds the heavy things (metrics.jsonl, checkpoints, model/); this table is the index the CLI, the HTTP
 * routes and the dashboard list and look runs up through.
 *
 * Life: queued → running → done | failed | cancelled. A run resumed after a crash goes back to running.
 */
import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { resolve } from "node:path";
import { openDatabase, registerSchema } from "./db.ts";

const RUNS_TABLE = (name: string) => `CREATE TABLE IF NOT EXISTS ${name} (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    config        TEXT NOT NULL,
    run_dir       TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    final_metrics TEXT,
    error         TEXT
  )`;

registerSchema(
  "runs",
  `${RUNS_TABLE("runs")};
  CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at DESC);`,
);

/**
 * Databases made before runs could be cancelled have a CHECK without 'cancelled'; SQLite cannot alter a CHECK, so
 * the table is copied into the new shape once (in one transaction: all rows or none).
 */
function migrateRunStatuses(db: Database): void {
  const table = db.query<{ sql: string }, []>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'").get();
  if (!table || table.sql.includes("'cancelled'")) return;
  db.transaction(() => {
    db.exec(RUNS_TABLE("runs_migrated"));
    db.exec("INSERT INTO runs_migrated SELECT id, name, status, config, run_dir, created_at, started_at, finished_at, final_metrics, error FROM runs");
    db.exec("DROP TABLE runs");
    db.exec("ALTER TABLE runs_migrated RENAME TO runs");
    db.exec("CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at DESC)");
  }).immediate();
}

export const RUN_STATUSES = ["queued", "running", "done", "failed", "cancelled"] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export interface RunRow {
  id: string;
  name: string;
  status: RunStatus;
  /** All settings of the run (the same object as run.json's). */
  config: Record<string, unknown>;
  /** Absolute path of the run folder. */
  runDir: string;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  finalMetrics: Record<string, unknown> | null;
  error: string | null;
}

interface RawRun {
  id: string;
  name: string;
  status: RunStatus;
  config: string;
  run_dir: string;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  final_metrics: string | null;
  error: string | null;
}

const toRun = (r: RawRun): RunRow => ({
  id: r.id,
  name: r.name,
  status: r.status,
  config: JSON.parse(r.config),
  runDir: r.run_dir,
  createdAt: r.created_at,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
  finalMetrics: r.final_metrics === null ? null : JSON.parse(r.final_metrics),
  error: r.error,
});

/** Short, URL-safe, sortable by creation time (ms timestamp in base 36, then randomness). */
export function newRunId(now = Date.now()): string {
  return `run-${now.toString(36)}${randomBytes(3).toString("hex")}`;
}

export interface RunFilter {
  status?: RunStatus;
  /** Newest first; default 100. */
  limit?: number;
}

/** All SQL about runs. One instance per connection. */
export class RunStore {
  constructor(readonly db: Database) {
    migrateRunStatuses(db);
  }

  /**
   * Registers a run for `runDir`, or — when that folder already has a row (a resumed or repeated run) — updates its
   * name and config and queues it again, keeping its id.
   */
  register(run: { name: string; runDir: string; config: Record<string, unknown>; id?: string }): RunRow {
    const runDir = resolve(run.runDir);
    const existing = this.byDir(runDir);
    if (existing) {
      this.db
        .query("UPDATE runs SET name = ?, config = ?, status = 'queued', error = NULL, finished_at = NULL WHERE id = ?")
        .run(run.name, JSON.stringify(run.config), existing.id);
      return this.get(existing.id)!;
    }
    const id = run.id ?? newRunId();
    this.db
      .query("INSERT INTO runs (id, name, status, config, run_dir, created_at) VALUES (?, ?, 'queued', ?, ?, ?)")
      .run(id, run.name, JSON.stringify(run.config), runDir, Date.now());
    return this.get(id)!;
  }

  markRunning(id: string): void {
    this.db.query("UPDATE runs SET status = 'running', started_at = ?, error = NULL WHERE id = ?").run(Date.now(), id);
  }

  markDone(id: string, finalMetrics: Record<string, unknown>): void {
    this.db
      .query("UPDATE runs SET status = 'done', finished_at = ?, final_metrics = ?, error = NULL WHERE id = ?")
      .run(Date.now(), JSON.stringify(finalMetrics), id);
  }

  markFailed(id: string, error: string): void {
    this.db.query("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?").run(Date.now(), error, id);
  }

  /** Stopped on request (POST /v1/runs/:id/cancel); `reason` says by whom or why. */
  markCancelled(id: string, reason = "cancelled"): void {
    this.db.query("UPDATE runs SET status = 'cancelled', finished_at = ?, error = ? WHERE id = ?").run(Date.now(), reason, id);
  }

  /** Forgets the run (its folder is the caller's to remove). */
  delete(id: string): void {
    this.db.query("DELETE FROM runs WHERE id = ?").run(id);
  }

  /** Adds keys to the final metrics (e.g. an evaluation's accuracy after training). */
  mergeMetrics(id: string, extra: Record<string, unknown>): void {
    const run = this.get(id);
    if (!run) return;
    this.db.query("UPDATE runs SET final_metrics = ? WHERE id = ?").run(JSON.stringify({ ...run.finalMetrics, ...extra }), id);
  }

  get(id: string): RunRow | null {
    const row = this.db.query<RawRun, [string]>("SELECT * FROM runs WHERE id = ?").get(id);
    return row ? toRun(row) : null;
  }

  byDir(runDir: string): RunRow | null {
    const row = this.db.query<RawRun, [string]>("SELECT * FROM runs WHERE run_dir = ?").get(resolve(runDir));
    return row ? toRun(row) : null;
  }

  /** By id, else by folder, else the newest run with that name. */
  find(idOrDirOrName: string): RunRow | null {
    return this.get(idOrDirOrName) ?? this.byDir(idOrDirOrName) ?? this.findByName(idOrDirOrName);
  }

  /** The newest run with that name. */
  findByName(name: string): RunRow | null {
    const row = this.db.query<RawRun, [string]>("SELECT * FROM runs WHERE name = ? ORDER BY created_at DESC, rowid DESC LIMIT 1").get(name);
    return row ? toRun(row) : null;
  }

  list(filter: RunFilter = {}): RunRow[] {
    const limit = filter.limit ?? 100;
    const rows = filter.status
      ? this.db
          .query<RawRun, [string, number]>("SELECT * FROM runs WHERE status = ? ORDER BY created_at DESC, rowid DESC LIMIT ?")
          .all(filter.status, limit)
      : this.db.query<RawRun, [number]>("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?").all(limit);
    return rows.map(toRun);
  }

  counts(): Record<RunStatus, number> {
    const counts = Object.fromEntries(RUN_STATUSES.map((s) => [s, 0])) as Record<RunStatus, number>;
    for (const row of this.db.query<{ status: RunStatus; n: number }, []>("SELECT status, COUNT(*) AS n FROM runs GROUP BY status").all()) {
      counts[row.status] = row.n;
    }
    return counts;
  }
}

/** A RunStore on an open database (left open) or a database file (default: the project's); `close` closes only what it opened. */
export function openRunStore(db?: Database | string): { runs: RunStore; close: () => void } {
  if (db !== undefined && typeof db !== "string") return { runs: new RunStore(db), close: () => {} };
  const opened = openDatabase(db);
  return { runs: new RunStore(opened), close: () => opened.close() };
}
