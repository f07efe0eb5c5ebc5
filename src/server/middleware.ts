/**
 * The middleware every route shares, written once: bearer-token auth, the body size limit, valibot validation and
 * the error handler that turns anything thrown into a JSON answer (the server never crashes on input).
 */
import type { Context, ErrorHandler, MiddlewareHandler, NotFoundHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { validator } from "hono/validator";
import type { ValidationTargets } from "hono";
import * as v from "valibot";
import { isUserError, UserError } from "../errors.ts";

/** Paths anyone may call without a token (load balancers and `serve`'s own readiness probe). */
const PUBLIC_PATHS = new Set(["/healthz"]);

export interface ErrorBody {
  error: string;
  issues?: { path: string; message: string }[];
}

/** Bearer-token check on every path but the public ones; no token configured = open (loopback only, see serve). */
export function requireToken(token: string | undefined): MiddlewareHandler {
  if (!token) return async (_c, next) => next();
  const check = bearerAuth({
    token,
    noAuthenticationHeader: { message: { error: "missing bearer token" } },
    invalidAuthenticationHeader: { message: { error: "malformed Authorization header" } },
    invalidToken: { message: { error: "invalid token" } },
  });
  return async (c, next) => (PUBLIC_PATHS.has(c.req.path) ? next() : check(c, next));
}

export function limitBody(maxBytes: number): MiddlewareHandler {
  return bodyLimit({
    maxSize: maxBytes,
    onError: (c) => c.json<ErrorBody>({ error: `request body larger than ${maxBytes} bytes` }, 413),
  });
}

/** valibot issues as `{path: "choices.0.label", message}`: short, stable, readable by a person and a program. */
export function describeIssues(issues: readonly v.BaseIssue<unknown>[]): NonNullable<ErrorBody["issues"]> {
  return issues.map((issue) => ({ path: v.getDotPath(issue) ?? "", message: issue.message }));
}

const WHAT: Partial<Record<keyof ValidationTargets, string>> = { json: "request body", query: "query string", param: "path" };

/**
 * The one validation helper: `validate("json", Schema)` as route middleware, then `c.req.valid("json")` is the
 * schema's typed output. Invalid input → 400 `{error, issues}` through the error handler.
 */
export function validate<Target extends keyof ValidationTargets, S extends v.GenericSchema>(target: Target, schema: S) {
  return validator(target, (value, c): v.InferOutput<S> => {
    // Hono reads a body as JSON only when it says it is; say why, rather than "question: missing"
    if (target === "json" && !/^application\/([\w.+-]*\+)?json/i.test(c.req.header("content-type") ?? "")) {
      throw new UserError("request body must be JSON (content-type: application/json)", 400);
    }
    const result = v.safeParse(schema, value);
    if (!result.success) throw new UserError(`invalid ${WHAT[target] ?? target}`, 400, describeIssues(result.issues));
    return result.output;
  });
}

/** Maps what a handler throws to a status: UserError → its own, HTTPException → its own, teacher errors carry one. */
export const handleError: ErrorHandler = (err, c) => {
  if (isUserError(err)) {
    const body: ErrorBody = { error: err.message };
    if (Array.isArray(err.details)) body.issues = err.details;
    return c.json(body, err.status);
  }
  if (err instanceof HTTPException) {
    if (err.res) return err.res;
    return c.json<ErrorBody>({ error: err.message || "request failed" }, err.status);
  }
  const status = upstreamStatus(err);
  if (status) return c.json<ErrorBody>({ error: err.message }, status);
  console.error(`cot-distill serve: ${c.req.method} ${c.req.path}:`, err);
  return c.json<ErrorBody>({ error: "internal error" }, 500);
};

/** Teacher failures (TeacherError) carry the status to answer: 502/503/504. */
function upstreamStatus(err: Error): 502 | 503 | 504 | null {
  const status = (err as { status?: unknown }).status;
  return err.name === "TeacherError" && (status === 502 || status === 503 || status === 504) ? status : null;
}

export const handleNotFound: NotFoundHandler = (c: Context) =>
  c.json<ErrorBody>({ error: `no route for ${c.req.method} ${c.req.path}` }, 404);
