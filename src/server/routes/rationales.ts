/**
 * POST /v1/rationales: one question → rationale sample(s), parsed label, agreement with the gold answer if given,
 * and whether each came from the store. GET /v1/rationales?dataset=&split=&model=: the stored rationales of a
 * split as JSON lines, streamed (a split can be tens of thousands of rows). GET /v1/rationales/failures?dataset=
 * &split=&model=&kind=: the recorded failures with the raw answers, to see why a teacher's answers were refused.
 * GET /v1/rationales/browse?dataset=&teacher=&agrees=: a page of stored rationales for the dashboard's browser.
 */
import { Hono, type Context } from "hono";
import { UserError } from "../../errors.ts";
import { stream } from "hono/streaming";
import type { AppDeps } from "../app.ts";
import { TeacherError } from "../../teacher/errors.ts";
import { validate } from "../middleware.ts";
import type { RationaleStore } from "../../store/rationales.ts";
import { FailureListQuerySchema, RationaleBrowseQuerySchema, RationaleListQuerySchema, RationaleRequestSchema, type RationaleListQuery } from "../schemas.ts";

/** How long an on-demand request may hold its HTTP connection, all teacher attempts and waits included. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

/**
 * The answer, or a 504 once `ms` have passed. The teacher call goes on in the background (bounded by its own timeout
 * and attempts): its answer is stored, so asking again later is a store hit rather than a second payment.
 */
async function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TeacherError(`the teacher did not answer within ${ms / 1000} s (the request's deadline)`, "timeout", 504, 0)), ms);
  });
  work.catch(() => {}); // a failure after the deadline is nobody's to hear
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

export type RationaleLister = (query: RationaleListQuery) => AsyncIterable<unknown>;

/** The rationale store as the browser reads it: pages of records, and what teachers each dataset has. */
export type RationaleBrowser = Pick<RationaleStore, "browse" | "summary">;

/** Rows as JSON lines, streamed, stopping when the client goes away. */
function jsonLines(c: Context, rows: AsyncIterable<unknown>): Response {
  c.header("content-type", "application/x-ndjson; charset=utf-8");
  return stream(c, async (out) => {
    for await (const row of rows) {
      if (out.aborted) break;
      await out.write(`${JSON.stringify(row)}\n`);
    }
  });
}

export function rationalesRoutes(deps: Pick<AppDeps, "teacher" | "listRationales" | "listFailures" | "requireDataset" | "requestTimeoutMs" | "rationales">): Hono {
  return new Hono()
    .get("/browse", validate("query", RationaleBrowseQuerySchema), (c) => {
      if (!deps.rationales) throw new UserError("this server has no rationale store", 404);
      const { dataset, teacher, agrees, limit, offset } = c.req.valid("query");
      const filter = { dataset, teacher, agrees: agrees === undefined ? undefined : agrees === "unknown" ? null : agrees === "true" };
      const page = deps.rationales.browse(filter, limit, offset);
      const teachers = deps.rationales.summary().map(({ dataset, model, rationales, agreeing }) => ({ dataset, model, rationales, agreeing }));
      return c.json({ ...page, limit, offset, teachers });
    })
    .post("/", validate("json", RationaleRequestSchema), async (c) => {
      const { model, temperature, n, maxTokens, structured, template, format, shots, mode, ...item } = c.req.valid("json");
      if (item.dataset !== undefined) deps.requireDataset(item.dataset);
      // the format is the item's (how its answer is read); template, shots and mode shape the prompt
      const request = { item: { ...item, format }, params: { model, temperature, n, maxTokens, structured }, prompt: { template, shots, mode } };
      const asked = deps.teacher.rationales(request);
      return c.json(await withDeadline(asked, deps.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS));
    })
    .get("/", validate("query", RationaleListQuerySchema), (c) => {
      const query = c.req.valid("query");
      deps.requireDataset(query.dataset);
      return jsonLines(c, deps.listRationales(query));
    })
    .get("/failures", validate("query", FailureListQuerySchema), (c) => {
      const query = c.req.valid("query");
      if (query.dataset !== undefined) deps.requireDataset(query.dataset);
      if (!deps.listFailures) throw new UserError("this server keeps no failure records", 404);
      return jsonLines(c, deps.listFailures(query));
    });
}
