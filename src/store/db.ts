/**
 * The one SQLite database (bun:sqlite, WAL) behind the teacher store, jobs and runs. Each store module owns its
 * tables and registers its schema here; `openDatabase` applies every registered schema once per connection.
 * SQL lives only in src/store/.
 */
import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

export const DEFAULT_DB_PATH = process.env.COT_DISTILL_DB ?? "cot-distill.sqlite";

const schemas: { name: string; sql: string; migrate?: (db: Database) => void }[] = [];

/**
 * Called at module load by each store module: `registerSchema("rationales", "CREATE TABLE IF NOT EXISTS …")`.
 * `migrate` brings a database made by an older version up to date (e.g. adds a column), after the SQL ran.
 */
export function registerSchema(name: string, sql: string, migrate?: (db: Database) => void): void {
  if (!schemas.some((s) => s.name === name)) schemas.push({ name, sql, migrate });
}

/** Adds a column to a table made before the column existed (SQLite has no ADD COLUMN IF NOT EXISTS). */
export function addColumnIfMissing(db: Database, table: string, column: string, type: string): void {
  const columns = db.query<{ name: string }, []>(`PRAGMA table_info(${table})`).all();
  if (!columns.some((c) => c.name === column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
}

export function openDatabase(path = DEFAULT_DB_PATH): Database {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { create: true, strict: true });
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL"); // with WAL: durable across process crashes (kill -9), not power loss
  db.exec("PRAGMA busy_timeout = 5000");
  db.exec("PRAGMA foreign_keys = ON");
  for (const schema of schemas) {
    db.exec(schema.sql);
    schema.migrate?.(db);
  }
  return db;
}
