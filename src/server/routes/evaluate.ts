/**
 * Evaluation and prediction over HTTP. POST /v1/evaluate {run | modelDir, dataset, split, limit} → 202 with a job;
 * GET /v1/evaluate/:id → its status (queued, running, done, failed, cancelled), then accuracy, rank accuracy and
 * per-example predictions; POST /v1/evaluate/:id/cancel stops it, DELETE /v1/evaluate/:id forgets it. POST /v1/predict
 * {run, question, choices} → the student's label (and its rationale for placement "before"). Both run the model
 * in a child process (src/server/worker.ts).
 */
import { Hono } from "hono";
import { validate } from "../middleware.ts";
import type { RunRoutesDeps } from "./runs.ts";
import { EvaluateRequestSchema, PredictRequestSchema } from "./run-schemas.ts";

export function evaluateRoutes(deps: RunRoutesDeps): Hono {
  const { supervisor } = deps;
  return new Hono()
    .post("/evaluate", validate("json", EvaluateRequestSchema), (c) => {
      const request = c.req.valid("json");
      deps.requireDataset(request.dataset);
      return c.json(supervisor.startEvaluation(request), 202);
    })
    .get("/evaluate", (c) => c.json({ evaluations: [...supervisor.evaluations.values()].map(({ result, ...summary }) => summary) }))
    .get("/evaluate/:id", (c) => c.json(supervisor.requireEvaluation(c.req.param("id"))))
    .post("/evaluate/:id/cancel", async (c) => c.json(await supervisor.cancelEvaluation(c.req.param("id"))))
    .delete("/evaluate/:id", async (c) => c.json(await supervisor.deleteEvaluation(c.req.param("id"))))
    .post("/predict", validate("json", PredictRequestSchema), async (c) => c.json(await supervisor.predict(c.req.valid("json"))));
}
