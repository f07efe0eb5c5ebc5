/**
 * Distillation runs over HTTP: POST /v1/runs starts one headless (a `train` child process) → 202 with the run;
 * GET /v1/runs lists them (?status=); GET /v1/runs/:id; POST /v1/runs/:id/cancel stops it (queued: at once;
 * running: its process is killed, SIGTERM then SIGKILL) and records it cancelled; DELETE /v1/runs/:id cancels it
 * if need be and removes its row and folder; GET /v1/runs/:id/metrics streams metrics.jsonl as
 * server-sent events — every line so far, then new ones as training writes them (`metrics`), `restart` when a
 * resumed run rewrote the log (the lines follow again from step 1), and one `end` with the run when it finished.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Hono } from "hono";
import * as v from "valibot";
import { RUN_STATUSES, type RunRow } from "../../store/runs.ts";
import type { StepMetrics } from "../../train/metrics.ts";
import { validate } from "../middleware.ts";
import { sse, type ServerEvent } from "../sse.ts";
import type { RunSupervisor } from "../worker.ts";
import { RunRequestSchema } from "./run-schemas.ts";

export interface RunRoutesDeps {
  supervisor: RunSupervisor;
  /** Throws UserError(404) for an unknown dataset. */
  requireDataset: (name: string) => unknown;
}

const RunListQuery = v.object({
  status: v.optional(v.picklist(RUN_STATUSES)),
  limit: v.optional(v.pipe(v.string(), v.toNumber(), v.integer(), v.minValue(1), v.maxValue(1_000))),
});

/** How often a metrics stream looks for new lines while the run trains. */
const POLL_MS = 250;

const finished = (run: RunRow | null) => run === null || run.status === "done" || run.status === "failed" || run.status === "cancelled";

/**
 * Complete lines appended to `path` after `offset` bytes; the offset moves only past whole lines. A file shorter
 * than the offset was rewritten (a resumed run drops the steps after its checkpoint): read again from the start.
 */
function newLines(path: string, offset: number): { lines: string[]; offset: number; rewritten: boolean } {
  if (!existsSync(path)) return { lines: [], offset, rewritten: false };
  const bytes = readFileSync(path);
  const rewritten = bytes.length < offset;
  const text = bytes.subarray(rewritten ? 0 : offset).toString("utf8");
  const end = text.lastIndexOf("\n") + 1;
  const whole = text.slice(0, end);
  return { lines: whole.split("\n").filter((l) => l.trim()), offset: (rewritten ? 0 : offset) + Buffer.byteLength(whole), rewritten };
}

async function* metricsEvents(deps: RunRoutesDeps, id: string, signal: AbortSignal): AsyncGenerator<ServerEvent> {
  const path = join(deps.supervisor.requireRun(id).runDir, "metrics.jsonl");
  let offset = 0;
  while (!signal.aborted) {
    const run = deps.supervisor.runs.get(id); // read before the file: a run seen finished has written its last line
    const read = newLines(path, offset);
    offset = read.offset;
    if (read.rewritten) yield { event: "restart", data: { step: 0 } };
    for (const line of read.lines) yield { event: "metrics", data: JSON.parse(line) as StepMetrics };
    if (finished(run)) {
      yield { event: "end", data: run };
      return;
    }
    await Bun.sleep(POLL_MS); // a client that left is noticed within one poll
  }
}

export function runsRoutes(deps: RunRoutesDeps): Hono {
  const { supervisor } = deps;
  return new Hono()
    .post("/", validate("json", RunRequestSchema), async (c) => {
      const request = c.req.valid("json");
      deps.requireDataset(request.dataset);
      return c.json(await supervisor.startRun(request), 202);
    })
    .get("/", validate("query", RunListQuery), (c) => {
      const query = c.req.valid("query");
      // runs kept outside the runs root (a CLI run into /tmp) are not the server's: listed no more than served
      const runs = supervisor.runs.list(query).filter((run) => supervisor.roots.contains("run", run.runDir));
      return c.json({ runs, counts: supervisor.runs.counts() });
    })
    .get("/:id", (c) => c.json(supervisor.requireRun(c.req.param("id"))))
    .post("/:id/cancel", async (c) => c.json(await supervisor.cancelRun(c.req.param("id"))))
    .delete("/:id", async (c) => c.json(await supervisor.deleteRun(c.req.param("id"))))
    .get("/:id/metrics", (c) => {
      const id = supervisor.requireRun(c.req.param("id")).id; // 404 before the stream starts
      return sse(c, (signal) => metricsEvents(deps, id, signal));
    });
}
