/**
 * The ONE Hono app of cot-distill: shared middleware (auth, body limit, errors) once, then one route module per
 * concern. Adding a concern is one line: `app.route("/v1/runs", runsRoutes(deps))`.
 */
import { Hono } from "hono";
import { toJsonSchema } from "@valibot/to-json-schema";
import { UserError } from "../errors.ts";
import type { JobManager } from "../teacher/jobs.ts";
import type { TeacherService } from "../teacher/service.ts";
import { cors } from "hono/cors";
import { handleError, handleNotFound, limitBody, requireLoopbackHost, requireToken } from "./middleware.ts";
import { experimentRoutes } from "./routes/experiments.ts";
import { jobsRoutes } from "./routes/jobs.ts";
import { rationalesRoutes, type RationaleBrowser, type RationaleLister } from "./routes/rationales.ts";
import { requestSchemas, type FailureListQuery } from "./schemas.ts";
import { runRequestSchemas } from "./routes/run-schemas.ts";
import type { RunSupervisor } from "./worker.ts";

export interface AppDeps {
  teacher: Pick<TeacherService, "rationales">;
  jobs: JobManager;
  /** Streams stored rationales of a dataset split (the rationale store's listing). */
  listRationales: RationaleLister;
  /** Pages of stored rationales for the dashboard's browser (absent: GET /v1/rationales/browse is 404). */
  rationales?: RationaleBrowser;
  /** Streams recorded failures (raw answers the parser refused, teacher errors) for inspection. */
  listFailures?: (query: FailureListQuery) => AsyncIterable<unknown>;
  /** Throws UserError(404) for an unknown dataset (the dataset registry's getDataset). */
  requireDataset: (name: string) => unknown;
  /** Bearer token required on every route but /healthz; undefined = open (serve allows that on loopback only). */
  token?: string;
  /** Training/evaluation child processes behind /v1/runs, /v1/evaluate, /v1/predict and the dashboard. */
  supervisor?: RunSupervisor;
  /** Largest request body accepted, bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /**
   * Answer only requests whose Host names the loopback interface (403 otherwise): what `serve` sets on a loopback
   * bind without a token, against DNS rebinding.
   */
  loopbackHostsOnly?: boolean;
  /** Origins allowed to call from a browser (CORS); none by default, so a page of another origin cannot read answers. */
  corsOrigins?: string[];
  /** On-demand teacher requests (POST /v1/rationales) are answered 504 after this long (default 120 s). */
  requestTimeoutMs?: number;
}

export const DEFAULT_MAX_BODY_BYTES = 1 << 20;

export function createApp(deps: AppDeps): Hono {
  const app = new Hono();
  app.onError(handleError);
  app.notFound(handleNotFound);
  if (deps.loopbackHostsOnly) app.use("*", requireLoopbackHost());
  if (deps.corsOrigins?.length) app.use("*", cors({ origin: deps.corsOrigins, allowHeaders: ["authorization", "content-type"], maxAge: 600 }));
  app.get("/healthz", (c) => c.json({ ok: true }));
  app.use("*", requireToken(deps.token));
  app.use("*", limitBody(deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES));

  app.route("/v1/rationales", rationalesRoutes(deps));
  app.route("/v1/jobs", jobsRoutes(deps));
  app.route("/v1/schema", schemaRoutes());
  app.route("/", experimentRoutes(deps));
  return app;
}

/** Every request body the app validates, by name: the teacher routes' and the run/evaluation routes'. */
const allRequestSchemas = { ...requestSchemas, ...runRequestSchemas };

/** JSON Schemas of every request body, generated from the valibot schemas (input side: what a client sends). */
function schemaRoutes(): Hono {
  const asJson = (name: string) =>
    toJsonSchema(allRequestSchemas[name as keyof typeof allRequestSchemas], { typeMode: "input", errorMode: "ignore" });
  return new Hono()
    .get("/", (c) => c.json(Object.fromEntries(Object.keys(allRequestSchemas).map((name) => [name, asJson(name)]))))
    .get("/:name", (c) => {
      const name = c.req.param("name");
      if (!Object.hasOwn(allRequestSchemas, name)) {
        throw new UserError(`unknown schema "${name}" (known: ${Object.keys(allRequestSchemas).join(", ")})`, 404);
      }
      return c.json(asJson(name));
    });
}
