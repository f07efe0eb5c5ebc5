/**
 * The middleware every route shares, written once: bearer-token auth, the body size limit, valibot validation and
 * the error handler that turns anything thrown into a JSON answer (the server never crashes on input).
 */
import type { Context, ErrorHandler, MiddlewareHandler, NotFoundHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { validator } from "hono/validator";
import type { ValidationTargets } from "hono";
import { timingSafeEqual } from "node:crypto";
import * as v from "valibot";
import { BusyError, isUserError, UserError } from "../errors.ts";

/** Paths anyone may call without a token (load balancers and `serve`'s own readiness probe). */
const PUBLIC_PATHS = new Set(["/healthz"]);

export interface ErrorBody {
  error: string;
  issues?: { path: string; message: string }[];
}

/** A token is any run of printable ASCII characters (space excluded), so whatever a user sets also works in a header. */
export const TOKEN_CHARS = /^[\x21-\x7e]+$/;
/** Shortest token `serve` accepts on a non-loopback interface (a guessable token there is no protection). */
export const MIN_REMOTE_TOKEN_LENGTH = 16;

/** Constant-time comparison (of SHA-256 digests, so the lengths leak nothing either). */
function sameSecret(a: string, b: string): boolean {
  const digest = (text: string) => new Bun.CryptoHasher("sha256").update(text).digest();
  return timingSafeEqual(digest(a), digest(b));
}

/**
 * Bearer-token check on every path but the public ones; no token configured = open (loopback only, see serve).
 * The token may hold any printable character (hono's bearerAuth allows only [A-Za-z0-9._~+/-], which made a
 * token with others a 400 even when sent right).
 */
export function requireToken(token: string | undefined): MiddlewareHandler {
  if (!token) return async (_c, next) => next();
  return async (c, next) => {
    if (PUBLIC_PATHS.has(c.req.path)) return next();
    const header = c.req.header("authorization");
    const challenge = { "www-authenticate": 'Bearer realm="cot-distill"' };
    if (header === undefined) return c.json<ErrorBody>({ error: "missing bearer token" }, 401, challenge);
    const match = /^Bearer +(.+)$/i.exec(header);
    if (!match) return c.json<ErrorBody>({ error: "malformed Authorization header (expected: Bearer <token>)" }, 400, challenge);
    if (!sameSecret(match[1].trim(), token)) return c.json<ErrorBody>({ error: "invalid token" }, 401, challenge);
    return next();
  };
}

/** Host names a loopback server answers to: localhost (and *.localhost), 127.0.0.0/8 and ::1, on any port. */
export function isLoopbackHost(hostHeader: string): boolean {
  const host = hostHeader.trim().toLowerCase();
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d*$/, "");
  if (name === "localhost" || name.endsWith(".localhost")) return true;
  if (name === "::1" || name === "0:0:0:0:0:0:0:1") return true;
  return /^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(name);
}

/**
 * On a server without a token, the Host header must name the loopback interface: a web page the user visits can
 * make the browser send requests to 127.0.0.1 under its own name (DNS rebinding), and those carry a foreign Host.
 */
export function requireLoopbackHost(): MiddlewareHandler {
  return async (c, next) => {
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    if (!isLoopbackHost(host)) {
      return c.json<ErrorBody>({ error: "this server answers only to localhost names (it has no token); set COT_DISTILL_TOKEN to serve other names" }, 403);
    }
    return next();
  };
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
    if (err instanceof BusyError) c.header("retry-after", String(Math.ceil(err.retryAfterS)));
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
