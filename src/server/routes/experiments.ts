/**
 * The distillation side of the app, mounted with one line in app.ts (`app.route("/", experimentRoutes(deps))`):
 * runs, evaluation, prediction and the dashboard, all over one RunSupervisor (the child processes doing GPU work).
 * Without one in the deps, one is made on the app's database (the job store's connection, i.e. `serve --db`).
 */
import type { Database } from "bun:sqlite";
import { Hono } from "hono";
import { DEFAULT_DB_PATH } from "../../store/db.ts";
import { RunStore } from "../../store/runs.ts";
import { RunSupervisor } from "../worker.ts";
import { dashboardRoutes } from "./dashboard.ts";
import { evaluateRoutes } from "./evaluate.ts";
import { runsRoutes } from "./runs.ts";

export interface ExperimentRoutesDeps {
  requireDataset: (name: string) => unknown;
  supervisor?: RunSupervisor;
  /** The teacher jobs, whose database the runs share when no supervisor is given. */
  jobs?: { store: { db: Database } };
}

function defaultSupervisor(deps: ExperimentRoutesDeps): RunSupervisor {
  const db = deps.jobs?.store.db;
  if (!db) return new RunSupervisor({ dbPath: DEFAULT_DB_PATH });
  return new RunSupervisor({ runs: new RunStore(db), dbPath: db.filename });
}

export function experimentRoutes(deps: ExperimentRoutesDeps): Hono {
  const supervisor = deps.supervisor ?? defaultSupervisor(deps);
  const runDeps = { supervisor, requireDataset: deps.requireDataset };
  return new Hono()
    .route("/v1/runs", runsRoutes(runDeps))
    .route("/v1", evaluateRoutes(runDeps))
    .route("/", dashboardRoutes({ experimentsRoot: supervisor.experimentsRoot }));
}
