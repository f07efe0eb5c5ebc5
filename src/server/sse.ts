/**
 * Server-sent events from any async source: a route hands over a function that yields events until it is done or
 * the client goes away (the signal aborts). Reused by every route that streams progress (jobs, runs, evaluation).
 */
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";

export interface ServerEvent {
  /** The SSE `event:` name; clients listen with `addEventListener(event, …)`. */
  event: string;
  data: unknown;
}

export type EventSource = (signal: AbortSignal) => AsyncIterable<ServerEvent>;

/** How often an idle stream sends a comment so proxies keep it open. */
const KEEPALIVE_MS = 15_000;

export function sse(c: Context, source: EventSource): Response {
  return streamSSE(c, async (stream) => {
    const aborted = new AbortController();
    stream.onAbort(() => aborted.abort());
    const keepalive = setInterval(() => void stream.write(": keepalive\n\n").catch(() => aborted.abort()), KEEPALIVE_MS);
    let id = 0;
    try {
      for await (const { event, data } of source(aborted.signal)) {
        if (aborted.signal.aborted) break;
        await stream.writeSSE({ event, data: JSON.stringify(data), id: String(id++) });
      }
    } finally {
      clearInterval(keepalive);
      aborted.abort();
    }
  });
}
