import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { RunStore } from "../../src/store/runs.ts";

function freshStore(): RunStore {
  return new RunStore(openDatabase(":memory:"));
}

describe("RunStore", () => {
  test("a run goes queued → running → done with its final metrics, and is found by id, folder and name", () => {
    const runs = freshStore();
    const run = runs.register({ name: "after-full", runDir: "runs/after-full", config: { placement: "after", k: null } });
    expect(run.status).toBe("queued");
    expect(run.runDir).toBe(resolve("runs/after-full"));
    expect(run.config).toEqual({ placement: "after", k: null });
    runs.markRunning(run.id);
    expect(runs.get(run.id)!.status).toBe("running");
    expect(runs.get(run.id)!.startedAt).toBeGreaterThan(0);
    runs.markDone(run.id, { loss: 1.25, steps: 10 });
    const done = runs.get(run.id)!;
    expect(done.status).toBe("done");
    expect(done.finalMetrics).toEqual({ loss: 1.25, steps: 10 });
    expect(done.finishedAt).toBeGreaterThanOrEqual(done.startedAt!);
    runs.mergeMetrics(run.id, { accuracy: 0.5 });
    expect(runs.get(run.id)!.finalMetrics).toEqual({ loss: 1.25, steps: 10, accuracy: 0.5 });
    expect(runs.find(run.id)!.id).toBe(run.id);
    expect(runs.find("runs/after-full")!.id).toBe(run.id);
    expect(runs.find("after-full")!.id).toBe(run.id);
    expect(runs.find("nope")).toBeNull();
  });

  test("a failed run keeps its error; registering the same folder again re-queues it under the same id", () => {
    const runs = freshStore();
    const run = runs.register({ name: "a", runDir: "/tmp/x/a", config: {} });
    runs.markRunning(run.id);
    runs.markFailed(run.id, "loss is NaN");
    expect(runs.get(run.id)!).toMatchObject({ status: "failed", error: "loss is NaN" });
    const again = runs.register({ name: "a2", runDir: "/tmp/x/a", config: { epochs: 2 } });
    expect(again).toMatchObject({ id: run.id, name: "a2", status: "queued", error: null, config: { epochs: 2 } });
  });

  test("lists newest first, filters by status, counts per status", () => {
    const runs = freshStore();
    const ids = ["one", "two", "three"].map((name) => runs.register({ name, runDir: `/tmp/r/${name}`, config: {} }).id);
    runs.markDone(ids[1], {});
    expect(runs.list().map((r) => r.name)).toEqual(["three", "two", "one"]);
    expect(runs.list({ limit: 1 }).map((r) => r.name)).toEqual(["three"]);
    expect(runs.list({ status: "done" }).map((r) => r.name)).toEqual(["two"]);
    expect(runs.counts()).toEqual({ queued: 2, running: 0, done: 1, failed: 0, cancelled: 0 });
  });

  test("a cancelled run keeps why; a deleted run is gone", () => {
    const runs = freshStore();
    const run = runs.register({ name: "c", runDir: "/tmp/x/c", config: {} });
    runs.markCancelled(run.id, "cancelled over HTTP");
    expect(runs.get(run.id)!).toMatchObject({ status: "cancelled", error: "cancelled over HTTP" });
    expect(runs.get(run.id)!.finishedAt).toBeGreaterThan(0);
    runs.delete(run.id);
    expect(runs.get(run.id)).toBeNull();
  });

  test("a database made before 'cancelled' existed is migrated in place, its rows kept", () => {
    const dir = mkdtempSync(join(tmpdir(), "runs-db-"));
    try {
      const path = join(dir, "old.sqlite");
      const old = new Database(path, { create: true });
      old.exec(`CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')), config TEXT NOT NULL,
        run_dir TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
        final_metrics TEXT, error TEXT)`);
      old.exec(`INSERT INTO runs (id, name, status, config, run_dir, created_at) VALUES ('run-old', 'old', 'running', '{"seed":1}', '/tmp/old', 1)`);
      expect(() => old.exec("UPDATE runs SET status = 'cancelled'")).toThrow();
      old.close();
      const runs = new RunStore(openDatabase(path));
      runs.markCancelled("run-old");
      expect(runs.get("run-old")).toMatchObject({ name: "old", status: "cancelled", config: { seed: 1 }, runDir: "/tmp/old" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("rows survive reopening the database file", () => {
    const dir = mkdtempSync(join(tmpdir(), "runs-db-"));
    try {
      const path = join(dir, "db.sqlite");
      const id = new RunStore(openDatabase(path)).register({ name: "kept", runDir: join(dir, "kept"), config: { seed: 3 } }).id;
      expect(new RunStore(openDatabase(path)).get(id)).toMatchObject({ name: "kept", config: { seed: 3 } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
