/**
 * The distillation side of the app, mounted with one line in app.ts (`app.route("/", experimentRoutes(deps))`):
 * runs, evaluation, prediction and the dashboard, all over one RunSupervisor (the child processes doing GPU work).
 * Without one in the deps, a supervisor on the default database is made (it opens the database on first use).
 */
import { Hono } from "hono";
import { DEFAULT_DB_PATH } from "../../store/db.ts";
import { RunSupervisor } from "../worker.ts";
import { dashboardRoutes } from "./dashboard.ts";
import { evaluateRoutes } from "./evaluate.ts";
import { runsRoutes } from "./runs.ts";

export interface ExperimentRoutesDeps {
  requireDataset: (name: string) => unknown;
  supervisor?: RunSupervisor;
}

export function experimentRoutes(deps: ExperimentRoutesDeps): Hono {
  const supervisor = deps.supervisor ?? new RunSupervisor({ dbPath: DEFAULT_DB_PATH });
  const runDeps = { supervisor, requireDataset: deps.requireDataset };
  return new Hono()
    .route("/v1/runs", runsRoutes(runDeps))
    .route("/v1", evaluateRoutes(runDeps))
    .route("/", dashboardRoutes({ experimentsRoot: supervisor.experimentsRoot }));
}
