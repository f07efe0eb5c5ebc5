/**
 * The checkpointer on a real SQLite file: while it runs, the writing connection's own threshold is out of reach and
 * the WAL still reaches the database file (copied by the worker thread); stopping gives the threshold back.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Checkpointer } from "../../src/store/checkpointer.ts";
import { openDatabase } from "../../src/store/db.ts";

let dir: string;
let path: string;
let db: Database;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "cot-checkpointer-"));
  path = join(dir, "c.sqlite");
  db = openDatabase(path);
  db.exec("CREATE TABLE pages (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const threshold = () => db.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint;

/** ~2 MB in 100 commits: far below the raised threshold, so only the worker can have copied it into the file. */
function write(from: number) {
  const insert = db.query("INSERT INTO pages (id, body) VALUES (?, ?)");
  for (let commit = 0; commit < 100; commit++) {
    db.transaction(() => {
      for (let i = 0; i < 5; i++) insert.run(from + commit * 5 + i, "x".repeat(4000));
    })();
  }
}

test("the worker copies the WAL into the database file while the writers' own threshold is out of reach", async () => {
  const before = threshold();
  const checkpointer = new Checkpointer(db, { everyMs: 20 });
  await checkpointer.ready;
  expect(threshold()).toBeGreaterThanOrEqual(20_000);
  const emptySize = statSync(path).size;
  write(0);
  const deadline = Date.now() + 10_000;
  while (statSync(path).size < emptySize + 1_500_000 && Date.now() < deadline) await Bun.sleep(20);
  expect(statSync(path).size).toBeGreaterThan(emptySize + 1_500_000);
  checkpointer.stop();
  expect(threshold()).toBe(before);
});

test("without a checkpointer the same writes stay in the WAL below the default threshold (the control)", () => {
  db.exec("PRAGMA wal_autocheckpoint = 20000");
  const emptySize = statSync(path).size;
  write(0);
  expect(statSync(path).size).toBe(emptySize);
});

test("an in-memory database gets no worker and keeps its threshold", async () => {
  const memory = openDatabase(":memory:");
  const before = memory.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint;
  const checkpointer = new Checkpointer(memory);
  await checkpointer.ready;
  expect(memory.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint).toBe(before);
  checkpointer.stop();
  memory.close();
});
