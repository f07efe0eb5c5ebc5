/**
 * The worker thread of src/store/checkpointer.ts: its own connection to the database file, copying the WAL into
 * the file every `everyMs` with a PASSIVE checkpoint (it never blocks the writers; the fsyncs happen here).
 */
import { Database } from "bun:sqlite";

declare const self: Worker;

self.onmessage = (event: MessageEvent<{ path: string; everyMs: number }>) => {
  const { path, everyMs } = event.data;
  const db = new Database(path);
  db.exec("PRAGMA busy_timeout = 1000");
  const checkpoint = () => {
    try {
      db.exec("PRAGMA wal_checkpoint(PASSIVE)");
    } catch {
      // busy or closing: the next round (or the writers' own backstop) catches up
    }
  };
  setInterval(checkpoint, everyMs);
  self.postMessage("ready");
};
