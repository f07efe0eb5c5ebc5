/**
 * The real app with its run routes on a loopback port, for the run/evaluate/dashboard tests: the teacher stack's
 * database and runtime (src/teacher/runtime.ts), a RunSupervisor whose runs go to a temp folder, Bun.serve.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { datasetsDir } from "../../src/data/registry.ts";
import { Roots } from "../../src/roots.ts";
import { createApp, type AppDeps } from "../../src/server/app.ts";
import { RunSupervisor, type SupervisorOptions } from "../../src/server/worker.ts";
import type { FakeOpenAIOptions } from "./fake-openai.ts";
import { startTeacherStack, type TeacherStack } from "./teacher-stack.ts";

export interface RunServer {
  base: string;
  /** The roots the server resolves client names in: runs, models, data, HF cache, all under the stack's temp dir. */
  roots: Roots;
  stack: TeacherStack;
  supervisor: RunSupervisor;
  runsRoot: string;
  close(): Promise<void>;
}

export interface RunServerOptions {
  experimentsRoot?: string;
  /** Supervisor settings (process cap, queue) beyond the defaults. */
  supervisor?: Partial<SupervisorOptions>;
  /** App settings (host check, CORS, request deadline) beyond the defaults. */
  app?: Partial<AppDeps>;
  /** The fake teacher's behaviour (n > 1 refused, answers, extra routes …). */
  fake?: FakeOpenAIOptions;
}

export async function startRunServer(options: RunServerOptions = {}): Promise<RunServer> {
  const stack = await startTeacherStack({ fake: options.fake });
  const runsRoot = join(stack.dir, "runs");
  const roots = new Roots({ runs: runsRoot, models: join(stack.dir, "models"), data: join(stack.dir, "data"), hfCache: join(stack.dir, "hf"), datasets: datasetsDir() });
  for (const dir of [runsRoot, roots.dirs.models, roots.dirs.data, roots.dirs.hfCache]) mkdirSync(dir, { recursive: true });
  const supervisor = new RunSupervisor({ dbPath: stack.dbPath, roots, runsRoot, experimentsRoot: options.experimentsRoot, acceptTimeoutMs: 120_000, ...options.supervisor });
  const deps: AppDeps = { ...stack.runtime.appDeps(), supervisor, ...options.app };
  const app = createApp(deps);
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch, idleTimeout: 0 });
  return {
    base: `http://127.0.0.1:${server.port}`,
    roots,
    stack,
    supervisor,
    runsRoot,
    close: async () => {
      supervisor.close();
      await server.stop(true);
      await stack.close();
    },
  };
}

/** Reads a server-sent-event stream to its end (or `until` an event) into `events`, which fills as they arrive. */
export async function readEvents(
  response: Response,
  until = "end",
  events: Array<{ event: string; data: unknown }> = [],
): Promise<Array<{ event: string; data: unknown }>> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    buffer += decoder.decode(read.value, { stream: true });
    for (let cut = buffer.indexOf("\n\n"); cut >= 0; cut = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (!event || data === undefined) continue;
      events.push({ event, data: JSON.parse(data) });
      if (event === until) {
        await reader.cancel();
        return events;
      }
    }
  }
  return events;
}

/** Polls `probe` until it gives a value (every 100 ms), or fails naming `what` after `timeoutMs`. */
export async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 240_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined) return value;
    await Bun.sleep(100);
  }
  throw new Error(`timed out waiting for ${what}`);
}
