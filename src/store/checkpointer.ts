/**
 * WAL checkpoints off the event loop. SQLite copies the WAL back into the database file (and fsyncs both) inside
 * whichever COMMIT crosses `wal_autocheckpoint` pages; during a bulk job that stalls the event loop for tens of ms
 * at a time (measured: 5–8% of a 64-way job's wall time on a busy disk). While a Checkpointer runs, a worker thread
 * does those checkpoints on its own connection every `everyMs`, and the writers' own threshold is raised to a
 * backstop that only matters if the worker falls behind. An in-memory database needs none.
 */
import type { Database } from "bun:sqlite";

export interface CheckpointerOptions {
  /** Time between the worker's checkpoints (default 250 ms). */
  everyMs?: number;
  /** The writers' own threshold in pages meanwhile (default 20000 pages, 80 MB of WAL with 4 KiB pages). */
  backstopPages?: number;
}

export class Checkpointer {
  private readonly worker: Worker | null;
  private readonly previousPages: number;
  /** Resolves when the worker has opened its connection (or at once without a worker). */
  readonly ready: Promise<void>;

  constructor(
    private readonly db: Database,
    { everyMs = 250, backstopPages = 20_000 }: CheckpointerOptions = {},
  ) {
    this.previousPages = db.query<{ wal_autocheckpoint: number }, []>("PRAGMA wal_autocheckpoint").get()!.wal_autocheckpoint;
    const onDisk = db.filename !== "" && db.filename !== ":memory:";
    this.worker = onDisk ? new Worker(new URL("./checkpoint-worker.ts", import.meta.url).href) : null;
    if (!this.worker) {
      this.ready = Promise.resolve();
      return;
    }
    const worker = this.worker;
    this.ready = new Promise((resolve) => worker.addEventListener("message", () => resolve(), { once: true }));
    worker.postMessage({ path: db.filename, everyMs });
    (worker as Worker & { unref(): void }).unref(); // never keeps the process alive
    db.exec(`PRAGMA wal_autocheckpoint = ${Math.max(this.previousPages, backstopPages)}`);
  }

  /** Gives the checkpoints back to the writers (the previous threshold) and ends the worker. */
  stop(): void {
    if (!this.worker) return;
    this.worker.terminate();
    try {
      this.db.exec(`PRAGMA wal_autocheckpoint = ${this.previousPages}`);
    } catch {
      // the database was closed first: nothing left to restore
    }
  }
}
