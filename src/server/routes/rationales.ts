/**
 * POST /v1/rationales: one question → rationale sample(s), parsed label, agreement with the gold answer if given,
 * and whether each came from the store. GET /v1/rationales?dataset=&split=&model=: the stored rationales of a
 * split as JSON lines, streamed (a split can be tens of thousands of rows).
 */
import { Hono } from "hono";
import { stream } from "hono/streaming";
import type { AppDeps } from "../app.ts";
import { validate } from "../middleware.ts";
import { formatOfAnswerKind } from "../../teacher/prompts.ts";
import { UserError } from "../../errors.ts";
import type { RationaleStore } from "../../store/rationales.ts";
import { RationaleBrowseQuerySchema, RationaleListQuerySchema, RationaleRequestSchema, type RationaleListQuery } from "../schemas.ts";

export type RationaleLister = (query: RationaleListQuery) => AsyncIterable<unknown>;

/** The rationale store as the browser reads it: pages of records, and what teachers each dataset has. */
export type RationaleBrowser = Pick<RationaleStore, "browse" | "summary">;

export function rationalesRoutes(deps: Pick<AppDeps, "teacher" | "listRationales" | "requireDataset" | "rationales">): Hono {
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
      const { model, temperature, n, maxTokens, template, format, shots, mode, ...item } = c.req.valid("json");
      const dataset = item.dataset === undefined ? undefined : (deps.requireDataset(item.dataset) as { answerKind?: "choice" | "number" | "text" });
      // a dataset's item is read as that dataset's answers are (math for SVAMP); a free question by its choices
      const itemFormat = dataset?.answerKind ? formatOfAnswerKind(dataset.answerKind) : undefined;
      const prompt = { template, format, shots, mode };
      const result = await deps.teacher.rationales({ item: { ...item, format: itemFormat }, params: { model, temperature, n, maxTokens }, prompt });
      return c.json(result);
    })
    .get("/", validate("query", RationaleListQuerySchema), (c) => {
      const query = c.req.valid("query");
      deps.requireDataset(query.dataset);
      c.header("content-type", "application/x-ndjson; charset=utf-8");
      return stream(c, async (out) => {
        for await (const row of deps.listRationales(query)) {
          if (out.aborted) break;
          await out.write(`${JSON.stringify(row)}\n`);
        }
      });
    });
}
