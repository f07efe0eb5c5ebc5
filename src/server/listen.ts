/**
 * How `serve` listens: Bun.serve behind a small TCP front that gives every request a header deadline.
 *
 * Bun.serve's idleTimeout only runs once a request's headers are complete (measured on Bun 1.4: a connection that
 * sends nothing, or half a header, is held forever), so 200 slow clients could hold 200 connections. The front
 * accepts the public connections and pipes their bytes to Bun.serve on a unix socket of its own; until a request's
 * headers are complete ("\r\n\r\n") it holds a timer, and closes the connection when it runs out. A new request on a
 * kept-alive connection (client bytes after response bytes) arms it again. After the headers, Bun's idleTimeout
 * applies as usual: silent bodies and idle keep-alive connections are closed after it.
 */
import type { Server, Socket } from "bun";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface ListenOptions {
  hostname: string;
  port: number;
  fetch: (request: Request, server: Server<undefined>) => Response | Promise<Response>;
  /** Seconds a connection may stay silent once a request's headers are in (Bun's idleTimeout, at most 255). */
  idleTimeoutS: number;
  /** Seconds a client has to deliver a request's headers, from its first byte or the connection's opening. */
  headerTimeoutS: number;
}

export interface Listening {
  port: number;
  /** Stops accepting, closes open connections (event streams included), removes the socket folder. */
  stop(): Promise<void>;
}

const HEADER_END = Buffer.from("\r\n\r\n");

/** One direction's bytes not yet taken by a socket (it was full): written again on drain. */
class Pending {
  private chunks: Buffer[] = [];

  /**
   * Writes what the socket takes, keeps (a copy of) the rest; order is kept by writing only once nothing is
   * pending. Only kept bytes are copied: the chunk a data handler gets is not ours after it returns.
   */
  push(socket: Socket<unknown>, chunk: Uint8Array): void {
    if (this.chunks.length > 0) {
      this.chunks.push(Buffer.from(chunk));
      return;
    }
    const written = socket.write(chunk);
    if (written < chunk.length) this.chunks.push(Buffer.from(chunk.subarray(Math.max(0, written))));
  }

  get empty(): boolean {
    return this.chunks.length === 0;
  }

  flush(socket: Socket<unknown>): void {
    while (this.chunks.length > 0) {
      const chunk = this.chunks[0];
      const written = socket.write(chunk);
      if (written < chunk.length) {
        this.chunks[0] = chunk.subarray(Math.max(0, written));
        return;
      }
      this.chunks.shift();
    }
  }
}

interface Connection {
  upstream: Socket<undefined> | null;
  /** Client bytes that arrived before the upstream connection was open. */
  early: Buffer[];
  toClient: Pending;
  toUpstream: Pending;
  /** Waiting for the end of a request's headers; `tail` keeps the last bytes seen, for a boundary split across chunks. */
  awaitingHeaders: boolean;
  tail: Buffer;
  /** The server answered since the last complete headers: the client's next bytes begin a new request. */
  answered: boolean;
  timer: ReturnType<typeof setTimeout> | null;
  closed: boolean;
  /** The server side has closed: end the client once what it sent has been written. */
  ending: boolean;
}

export async function listen(options: ListenOptions): Promise<Listening> {
  const dir = mkdtempSync(join(tmpdir(), "cot-distill-serve-"));
  const unix = join(dir, "http.sock");
  // Bun's types leave idleTimeout out of the unix-socket options; the server honours it there too (tested)
  const inner = Bun.serve({ unix, fetch: options.fetch, idleTimeout: options.idleTimeoutS } as unknown as Parameters<typeof Bun.serve>[0]);
  const open = new Set<Socket<Connection>>();

  const armHeaderTimer = (client: Socket<Connection>) => {
    const c = client.data;
    if (c.timer) clearTimeout(c.timer);
    c.timer = setTimeout(() => client.end(), options.headerTimeoutS * 1000);
  };
  const closeBoth = (client: Socket<Connection>) => {
    const c = client.data;
    if (c.closed) return;
    c.closed = true;
    if (c.timer) clearTimeout(c.timer);
    open.delete(client);
    c.upstream?.end();
    client.end();
  };

  const front = Bun.listen<Connection>({
    hostname: options.hostname,
    port: options.port,
    socket: {
      open(client) {
        client.data = { upstream: null, early: [], toClient: new Pending(), toUpstream: new Pending(), awaitingHeaders: true, tail: Buffer.alloc(0), answered: false, timer: null, closed: false, ending: false };
        open.add(client);
        armHeaderTimer(client);
        Bun.connect({
          unix,
          socket: {
            data(_upstream, chunk) {
              client.data.answered = true;
              client.data.toClient.push(client as Socket<unknown>, chunk);
            },
            drain(upstream) {
              client.data.toUpstream.flush(upstream as Socket<unknown>);
            },
            close() {
              // the response may still be on its way out: end the client only once it is written
              if (client.data.toClient.empty) closeBoth(client);
              else client.data.ending = true;
            },
            error() {
              closeBoth(client);
            },
          },
        }).then(
          (upstream) => {
            const c = client.data;
            if (c.closed) return void upstream.end();
            c.upstream = upstream;
            for (const chunk of c.early.splice(0)) c.toUpstream.push(upstream as Socket<unknown>, chunk);
          },
          () => closeBoth(client),
        );
      },
      data(client, chunk) {
        const c = client.data;
        const bytes = chunk;
        if (!c.awaitingHeaders && c.answered) {
          // a new request on a kept-alive connection: its headers get the same deadline
          c.awaitingHeaders = true;
          c.tail = Buffer.alloc(0);
          armHeaderTimer(client);
        }
        if (c.awaitingHeaders) {
          const seen = c.tail.length ? Buffer.concat([c.tail, bytes]) : bytes;
          if (seen.includes(HEADER_END)) {
            c.awaitingHeaders = false;
            c.answered = false;
            if (c.timer) clearTimeout(c.timer);
            c.timer = null;
          } else c.tail = Buffer.from(seen.subarray(Math.max(0, seen.length - 3)));
        }
        if (c.upstream) c.toUpstream.push(c.upstream as Socket<unknown>, bytes);
        else c.early.push(Buffer.from(bytes));
      },
      drain(client) {
        client.data.toClient.flush(client as Socket<unknown>);
        if (client.data.ending && client.data.toClient.empty) closeBoth(client);
      },
      close(client) {
        closeBoth(client);
      },
      error(client) {
        closeBoth(client);
      },
    },
  });

  return {
    port: front.port,
    stop: async () => {
      front.stop(true);
      for (const client of open) closeBoth(client);
      await inner.stop(true);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
