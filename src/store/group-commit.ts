/**
 * Group commit: writes queued during one turn of the event loop share ONE SQLite transaction, so a bulk job with
 * 64 answers arriving together pays for one commit (one WAL append of the pages they share) instead of 64.
 *
 * Each piece of work still runs in a savepoint of its own: if it throws, only its writes are undone and only its
 * promise rejects; the others commit. Every promise settles after the shared COMMIT, so a caller that is told its
 * work is done can rely on it being durable (to the database's own synchronous setting). The price is a window of
 * one event-loop turn between a caller queueing its work and the commit.
 */
import type { Database } from "bun:sqlite";

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface Queued {
  work: () => unknown;
  resolve: (value: unknown) => void;
  reject: (reason: unknown) => void;
}

export class GroupCommit {
  private queue: Queued[] = [];
  /** Made once: bun:sqlite builds a new wrapper object on every `db.transaction(fn)`, which shows in a profile. */
  private readonly shared: (batch: Queued[]) => Outcome[];
  private readonly savepoint: (work: () => unknown) => unknown;

  constructor(readonly db: Database) {
    this.savepoint = db.transaction((work: () => unknown) => work());
    // IMMEDIATE: take the write lock up front, so a read before the first write can never make the upgrade fail
    // at once (SQLITE_BUSY despite busy_timeout) when another process writes to the same database
    this.shared = db.transaction((batch: Queued[]) =>
      batch.map(({ work }): Outcome => {
        try {
          // nested in the shared transaction, this is a savepoint, rolled back alone when the work throws
          return { ok: true, value: this.savepoint(work) };
        } catch (error) {
          return { ok: false, error };
        }
      }),
    ).immediate;
  }

  /** Runs `work` (synchronous SQL on `db`) in the next shared transaction; resolves with its result once committed. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const first = this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject }) === 1;
      if (first) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    let outcomes: Outcome[];
    try {
      outcomes = this.shared(batch);
    } catch (error) {
      for (const { reject } of batch) reject(error); // the commit itself failed: nothing of the batch was stored
      return;
    }
    batch.forEach(({ resolve, reject }, i) => {
      const outcome = outcomes[i];
      if (outcome.ok) resolve(outcome.value);
      else reject(outcome.error);
    });
  }
}
