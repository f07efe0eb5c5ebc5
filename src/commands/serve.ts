import { serverRoots } from "../roots.ts";
import { createApp } from "../server/app.ts";
import { isLoopbackHost, MIN_REMOTE_TOKEN_LENGTH, TOKEN_CHARS } from "../server/middleware.ts";
import { listen } from "../server/listen.ts";
import { RunSupervisor } from "../server/worker.ts";
import { RunStore } from "../store/runs.ts";
import { DEFAULT_DB_PATH } from "../store/db.ts";
import { UserError } from "../errors.ts";
import { openTeacherRuntime } from "../teacher/runtime.ts";
import type { Command } from "./command.ts";
import { intFlag, parseFlags } from "./command.ts";
import { teacherClientFlags, teacherClientOptions } from "./teacher-flags.ts";

/** Seconds a connection may stay silent (a half-sent request included) before it is closed; SSE streams send a keepalive sooner. */
const DEFAULT_IDLE_TIMEOUT_S = 30;
/** Seconds a client has to send a request's headers (Bun.serve has no such deadline: src/server/listen.ts adds it). */
const DEFAULT_HEADER_TIMEOUT_S = 10;

export const command: Command = {
  summary: "run the teacher HTTP service (rationales, bulk jobs, schemas)",
  help: `usage: bun src/cli.ts serve [--host 127.0.0.1] [--port 8787] [--db PATH] [roots] [limits] [teacher options]

Serves the cot-distill HTTP API: POST/GET /v1/rationales, /v1/jobs (bulk rationale jobs with SSE progress), the
runs/evaluation routes and the dashboard at /, /v1/schema (JSON Schemas of every request body) and /healthz.
Unfinished rationale jobs in the database are resumed on start-up, and jobs of a crashed peer are adopted.
  --host H               interface to bind (default 127.0.0.1). Anything but loopback requires COT_DISTILL_TOKEN
                         (16 characters or more); without a token only localhost Host names are answered
  --port P               port (default 8787; 0 = any free port, printed on start-up)
  --db PATH              SQLite database (default $COT_DISTILL_DB or cot-distill.sqlite)
  --structured           structured mode ({rationale, answer} JSON via response_format) for requests and jobs that
                         do not say; a server that refuses it is asked in plain text, said once
Roots (request fields name things inside these, never other paths):
  --runs-dir D           run folders and experiment grids (default $COT_DISTILL_RUNS or runs)
  --models-dir D         model folders (default $COT_DISTILL_MODELS or models); hub ids come from the HF cache
                         ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)
  --data-dir D           rationale files and other data files (default $COT_DISTILL_DATA or data)
Limits:
  --max-processes N      training/evaluation child processes at once (default $COT_DISTILL_MAX_PROCESSES or 2)
  --max-queue N          work waiting for a process; beyond it 429 + Retry-After (default $COT_DISTILL_MAX_QUEUE or 16)
  --student-cache N      students each resident inference worker keeps loaded for /v1/predict and /v1/evaluate
                         (least recently used out first; default $COT_DISTILL_STUDENT_CACHE or 2)
  --request-timeout S    deadline of an on-demand POST /v1/rationales, all attempts included (default 120)
  --header-timeout S     close connections that have not sent a whole request header within S (default ${DEFAULT_HEADER_TIMEOUT_S})
  --idle-timeout S       close connections silent this long after their headers, idle keep-alives included (default ${DEFAULT_IDLE_TIMEOUT_S})
  --cors-origin O        allow browser calls from origin O (repeatable; default: no CORS at all)
${teacherClientFlags.help}

Environment: COT_DISTILL_TOKEN (bearer token checked on every route but /healthz; any printable characters),
OPENAI_BASE_URL, OPENAI_API_KEY, TEACHER_MODEL.`,
  async run(argv) {
    const { values } = parseFlags(argv, {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      db: { type: "string", default: DEFAULT_DB_PATH },
      structured: { type: "boolean" },
      "runs-dir": { type: "string" },
      "models-dir": { type: "string" },
      "data-dir": { type: "string" },
      "max-processes": { type: "string" },
      "max-queue": { type: "string" },
      "student-cache": { type: "string" },
      "request-timeout": { type: "string" },
      "idle-timeout": { type: "string" },
      "header-timeout": { type: "string" },
      "cors-origin": { type: "string", multiple: true },
      ...teacherClientFlags.options,
    });
    const env = process.env;
    const host = values.host;
    const port = intFlag(values.port, "port", 8787);
    if (port > 65535) throw new UserError(`--port must be at most 65535, got ${port}`);
    const token = checkToken(env.COT_DISTILL_TOKEN || undefined, host);
    const idleTimeout = intFlag(values["idle-timeout"], "idle-timeout", DEFAULT_IDLE_TIMEOUT_S, 1);
    if (idleTimeout > 255) throw new UserError(`--idle-timeout must be at most 255 seconds (Bun's limit), got ${idleTimeout}`);
    const headerTimeout = intFlag(values["header-timeout"], "header-timeout", DEFAULT_HEADER_TIMEOUT_S, 1);
    const requestTimeoutS = intFlag(values["request-timeout"], "request-timeout", 120, 1);
    const roots = serverRoots({ runs: values["runs-dir"], models: values["models-dir"], data: values["data-dir"] }, env);
    const runtime = openTeacherRuntime({
      dbPath: values.db,
      client: teacherClientOptions(values, env),
      teacherDefaults: values.structured ? { structured: true } : undefined,
    });
    const supervisor = new RunSupervisor({
      runs: new RunStore(runtime.db),
      dbPath: values.db,
      roots,
      maxProcesses: intFlag(values["max-processes"] ?? env.COT_DISTILL_MAX_PROCESSES, "max-processes", 2, 1),
      maxQueued: intFlag(values["max-queue"] ?? env.COT_DISTILL_MAX_QUEUE, "max-queue", 16, 0),
      studentCache: intFlag(values["student-cache"] ?? env.COT_DISTILL_STUDENT_CACHE, "student-cache", 2, 1),
    });
    const app = createApp({
      ...runtime.appDeps(token),
      supervisor,
      loopbackHostsOnly: !token,
      corsOrigins: values["cors-origin"],
      requestTimeoutMs: requestTimeoutS * 1000,
    });
    // SSE streams send a keepalive comment every 15 s, so only connections that are really silent are closed
    const server = await listen({ hostname: host, port, fetch: app.fetch, idleTimeoutS: idleTimeout, headerTimeoutS: headerTimeout });
    const resumed = runtime.jobs.resumeAll(5_000);
    console.error(`cot-distill serve: listening on http://${host.includes(":") ? `[${host}]` : host}:${server.port}`);
    if (resumed.length > 0) console.error(`cot-distill serve: resumed ${resumed.length} job(s): ${resumed.join(", ")}`);

    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
    console.error("cot-distill serve: shutting down (unfinished jobs resume on the next start)");
    supervisor.close();
    await runtime.close(); // job runners stop first: their items stay claimed/pending for the next start
    await server.stop(); // and open event streams are cut rather than waited for
    return 0;
  },
};

/** The token as configured, checked: printable, and long enough to mean something on a non-loopback interface. */
export function checkToken(token: string | undefined, host: string): string | undefined {
  const loopback = isLoopbackHost(host.includes(":") && !host.startsWith("[") ? `[${host}]` : host);
  if (token === undefined) {
    if (!loopback) throw new UserError(`refusing to bind ${host} without a token: set COT_DISTILL_TOKEN (or bind 127.0.0.1)`);
    return undefined;
  }
  if (!TOKEN_CHARS.test(token)) throw new UserError("COT_DISTILL_TOKEN must be printable ASCII without spaces");
  if (!loopback && token.length < MIN_REMOTE_TOKEN_LENGTH) {
    throw new UserError(`COT_DISTILL_TOKEN is ${token.length} characters; binding ${host} needs at least ${MIN_REMOTE_TOKEN_LENGTH}`);
  }
  return token;
}
