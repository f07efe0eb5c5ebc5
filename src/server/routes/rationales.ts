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
import { RationaleListQuerySchema, RationaleRequestSchema, type RationaleListQuery } from "../schemas.ts";

export type RationaleLister = (query: RationaleListQuery) => AsyncIterable<unknown>;

export function rationalesRoutes(deps: Pick<AppDeps, "teacher" | "listRationales" | "requireDataset">): Hono {
  return new Hono()
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
