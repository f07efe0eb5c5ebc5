/**
 * Bulk jobs over a dataset split: POST /v1/jobs → id; GET /v1/jobs/:id → counts; GET /v1/jobs/:id/events → progress
 * as server-sent events (`progress` while running, one `end` when the job stops); POST /v1/jobs/:id/cancel;
 * POST /v1/jobs/:id/retry runs the failed items again.
 */
import { Hono } from "hono";
import type { AppDeps } from "../app.ts";
import { validate } from "../middleware.ts";
import { JobRequestSchema, JobResumeSchema } from "../schemas.ts";
import { sse } from "../sse.ts";

export function jobsRoutes(deps: Pick<AppDeps, "jobs" | "requireDataset">): Hono {
  const { jobs } = deps;
  return new Hono()
    .post("/", validate("json", JobRequestSchema), async (c) => {
      const { dryRun, ...request } = c.req.valid("json");
      deps.requireDataset(request.dataset);
      if (dryRun) return c.json({ dryRun: true, ...(await jobs.estimate(request)) });
      return c.json(await jobs.create(request), 202);
    })
    .post("/:id/resume", validate("json", JobResumeSchema), (c) => {
      const { maxCostUsd } = c.req.valid("json");
      const id = c.req.param("id");
      return c.json(jobs.resumeWithBudget(id, maxCostUsd === undefined ? (jobs.require(id).params.maxCostUsd ?? null) : maxCostUsd), 202);
    })
    .get("/", (c) => c.json({ jobs: jobs.store.list().map((job) => jobs.snapshot(job.id)) }))
    .get("/:id", (c) => c.json(jobs.require(c.req.param("id"))))
    .post("/:id/cancel", (c) => c.json(jobs.cancel(c.req.param("id"))))
    .post("/:id/retry", (c) => c.json(jobs.retryFailed(c.req.param("id")), 202))
    .get("/:id/events", (c) => {
      const id = c.req.param("id");
      jobs.require(id); // 404 before the stream starts
      return sse(c, async function* (signal) {
        for await (const snapshot of jobs.watch(id, signal)) {
          yield { event: snapshot.status === "running" ? "progress" : "end", data: snapshot };
        }
      });
    });
}
