import { createApp } from "../server/app.ts";
import { DEFAULT_DB_PATH } from "../store/db.ts";
import { UserError } from "../errors.ts";
import { openTeacherRuntime } from "../teacher/runtime.ts";
import type { Command } from "./command.ts";
import { intFlag, parseFlags } from "./command.ts";
import { teacherClientFlags, teacherClientOptions } from "./teacher-flags.ts";

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

export const command: Command = {
  summary: "run the teacher HTTP service (rationales, bulk jobs, schemas)",
  help: `usage: bun src/cli.ts serve [--host 127.0.0.1] [--port 8787] [--db PATH] [teacher options]

Serves the cot-distill HTTP API: POST/GET /v1/rationales, /v1/jobs (bulk rationale jobs with SSE progress), the
runs/evaluation routes and the dashboard at /, /v1/schema (JSON Schemas of every request body) and /healthz.
Unfinished rationale jobs in the database are resumed on start-up, and jobs of a crashed peer are adopted.
  --host H               interface to bind (default 127.0.0.1). Anything but loopback requires COT_DISTILL_TOKEN
  --port P               port (default 8787; 0 = any free port, printed on start-up)
  --db PATH              SQLite database (default $COT_DISTILL_DB or cot-distill.sqlite)
  --structured           structured mode ({rationale, answer} JSON via response_format) for requests and jobs that
                         do not say; a server that refuses it is asked in plain text, said once
${teacherClientFlags.help}

Environment: COT_DISTILL_TOKEN (bearer token checked on every route but /healthz), OPENAI_BASE_URL, OPENAI_API_KEY,
TEACHER_MODEL.`,
  async run(argv) {
    const { values } = parseFlags(argv, {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      db: { type: "string", default: DEFAULT_DB_PATH },
      structured: { type: "boolean" },
      ...teacherClientFlags.options,
    });
    const host = values.host;
    const port = intFlag(values.port, "port", 8787);
    if (port > 65535) throw new UserError(`--port must be at most 65535, got ${port}`);
    const token = process.env.COT_DISTILL_TOKEN || undefined;
    if (!LOOPBACK.has(host) && !token) {
      throw new UserError(`refusing to bind ${host} without a token: set COT_DISTILL_TOKEN (or bind 127.0.0.1)`);
    }
    const runtime = openTeacherRuntime({
      dbPath: values.db,
      client: teacherClientOptions(values),
      teacherDefaults: values.structured ? { structured: true } : undefined,
    });
    const app = createApp(runtime.appDeps(token));
    // idleTimeout 0: SSE progress streams stay open for as long as a job runs
    const server = Bun.serve({ hostname: host, port, fetch: app.fetch, idleTimeout: 0 });
    const resumed = runtime.jobs.resumeAll(5_000);
    console.error(`cot-distill serve: listening on http://${host.includes(":") ? `[${host}]` : host}:${server.port}`);
    if (resumed.length > 0) console.error(`cot-distill serve: resumed ${resumed.length} job(s): ${resumed.join(", ")}`);

    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    console.error("cot-distill serve: shutting down (unfinished jobs resume on the next start)");
    await runtime.close(); // job runners stop first: their items stay claimed/pending for the next start
    await server.stop(true); // and open event streams are cut rather than waited for
    return 0;
  },
};
