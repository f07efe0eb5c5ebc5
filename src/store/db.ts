/**
 * The one SQLite database (bun:sqlite, WAL) behind the teacher store, jobs and runs. Each store module owns its
 * tables and registers its schema here; `openDatabase` applies every registered schema once per connection.
 * SQL lives only in src/store/.
 */
import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

export const DEFAULT_DB_PATH = process.env.COT_DISTILL_DB ?? "cot-distill.sqlite";

const schemas: { name: string; sql: string }[] = [];

/** Called at module load by each store module: `registerSchema("rationales", "CREATE TABLE IF NOT EXISTS …")`. */
export function registerSchema(name: string, sql: string): void {
  if (!schemas.some((s) => s.name === name)) schemas.push({ name, sql });
}

/** A change to an existing database, applied once per database file (recorded in schema_migrations). */
export interface Migration {
  name: string;
  /** Lower runs first: 0 adds columns, 10 moves or rewrites rows (which may read the new columns). */
  order: number;
  apply(db: Database): void;
}

const migrations: Migration[] = [];

/** Called at module load by a store module whose tables changed shape or whose old rows need fixing. */
export function registerMigration(migration: Migration): void {
  if (!migrations.some((m) => m.name === migration.name)) migrations.push(migration);
}

/** Adds a column unless the table already has it (new databases get it from their CREATE TABLE). */
export function addColumn(db: Database, table: string, column: string, type: string): void {
  const columns = db.query<{ name: string }, []>(`PRAGMA table_info(${table})`).all();
  if (columns.length > 0 && !columns.some((c) => c.name === column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
}

/** Each pending migration in its own IMMEDIATE transaction, so two processes opening one file apply it once. */
function migrate(db: Database): void {
  db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)");
  const done = db.query<{ n: number }, [string]>("SELECT COUNT(*) AS n FROM schema_migrations WHERE name = ?");
  for (const migration of [...migrations].sort((a, b) => a.order - b.order)) {
    if (done.get(migration.name)!.n > 0) continue;
    db.transaction(() => {
      if (done.get(migration.name)!.n > 0) return;
      migration.apply(db);
      db.query("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)").run(migration.name, Date.now());
    }).immediate();
  }
}

export function openDatabase(path = DEFAULT_DB_PATH): Database {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { create: true, strict: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL"); // with WAL: durable across process crashes (kill -9), not power loss
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("PRAGMA foreign_keys = ON");
  for (const schema of schemas) db.exec(schema.sql);
  migrate(db);
  return db;
}
