/**
 * Group commit on a real SQLite file, watched from a second connection (which sees only what was committed): work
 * queued in one event-loop turn shares one transaction, a failing work is undone alone, and a caller is told "done"
 * only once its writes are committed.
 */
import { afterEach, beforeEach, expect, test } from "bun:test";
import type { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { GroupCommit } from "../../src/store/group-commit.ts";

let dir: string;
let db: Database;
let other: Database;
let commits: GroupCommit;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "cot-group-commit-"));
  db = openDatabase(join(dir, "g.sqlite"));
  db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)");
  other = openDatabase(join(dir, "g.sqlite"));
  commits = new GroupCommit(db);
});
afterEach(() => {
  other.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const insert = (id: number) => () => db.query("INSERT INTO notes (id, text) VALUES (?, ?)").run(id, `note ${id}`).changes;
const committedIds = () => other.query<{ id: number }, []>("SELECT id FROM notes ORDER BY id").all().map((r) => r.id);

test("work queued in one turn shares one transaction; each caller hears back after the commit", async () => {
  const seenByOthersDuringWork: number[][] = [];
  const seenByOthersWhenTold: number[][] = [];
  const runs = [1, 2, 3].map((id) =>
    commits
      .run(() => {
        seenByOthersDuringWork.push(committedIds());
        return insert(id)();
      })
      .then((changes) => {
        seenByOthersWhenTold.push(committedIds());
        return changes;
      }),
  );
  expect(await Promise.all(runs)).toEqual([1, 1, 1]);
  expect(seenByOthersDuringWork).toEqual([[], [], []]); // the third still saw nothing: no commit between them
  expect(seenByOthersWhenTold).toEqual([[1, 2, 3], [1, 2, 3], [1, 2, 3]]);
});

test("a work that throws is undone alone: its caller gets the error, the others commit", async () => {
  const outcomes = await Promise.allSettled([
    commits.run(insert(1)),
    commits.run(() => {
      insert(2)();
      throw new Error("bookkeeping failed");
    }),
    commits.run(insert(3)),
  ]);
  expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
  expect((outcomes[1] as PromiseRejectedResult).reason.message).toBe("bookkeeping failed");
  expect(committedIds()).toEqual([1, 3]);
});

test("work queued after a commit goes into the next transaction", async () => {
  await commits.run(insert(1));
  const during: number[][] = [];
  await commits.run(() => {
    during.push(committedIds());
    return insert(2)();
  });
  expect(during).toEqual([[1]]);
  expect(committedIds()).toEqual([1, 2]);
});

test("a failed commit fails every caller of the batch, and nothing of it is stored", async () => {
  // a constraint checked at COMMIT: each insert is fine alone, the transaction as a whole is not
  db.exec("PRAGMA foreign_keys = ON; CREATE TABLE refs (note_id INTEGER REFERENCES notes(id) DEFERRABLE INITIALLY DEFERRED)");
  const outcomes = await Promise.allSettled([
    commits.run(insert(1)),
    commits.run(() => db.query("INSERT INTO refs (note_id) VALUES (99)").run().changes),
  ]);
  expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
  expect(committedIds()).toEqual([]);
  expect(db.inTransaction).toBe(false); // not left open: the next batch commits
  await commits.run(insert(2));
  expect(committedIds()).toEqual([2]);
});
