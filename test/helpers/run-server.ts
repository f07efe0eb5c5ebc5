/**
 * The real app with its run routes on a loopback port, for the run/evaluate/dashboard tests: the teacher stack's
 * database and runtime (src/teacher/runtime.ts), a RunSupervisor whose runs go to a temp folder, Bun.serve.
 */
import { join } from "node:path";
import { createApp, type AppDeps } from "../../src/server/app.ts";
import { RunSupervisor } from "../../src/server/worker.ts";
import type { FakeOpenAIOptions } from "./fake-openai.ts";
import { startTeacherStack, type TeacherStack } from "./teacher-stack.ts";

export interface RunServer {
  base: string;
  stack: TeacherStack;
  supervisor: RunSupervisor;
  runsRoot: string;
  close(): Promise<void>;
}

export async function startRunServer(options: { experimentsRoot?: string; fake?: FakeOpenAIOptions } = {}): Promise<RunServer> {
  const stack = await startTeacherStack({ fake: options.fake });
  const runsRoot = join(stack.dir, "runs");
  const supervisor = new RunSupervisor({ dbPath: stack.dbPath, runsRoot, experimentsRoot: options.experimentsRoot, acceptTimeoutMs: 120_000 });
  const deps: AppDeps = { ...stack.runtime.appDeps(), supervisor };
  const app = createApp(deps);
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch, idleTimeout: 0 });
  return {
    base: `http://127.0.0.1:${server.port}`,
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
