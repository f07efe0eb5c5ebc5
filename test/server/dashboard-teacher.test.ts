/**
 * The teacher side of the dashboard in headless Chromium (as test/server/dashboard.test.ts): a bulk job against the
 * fake teacher shown with live progress, tokens, cost and failures by reason, and the rationale browser (question,
 * choices, rationale, parsed label, agreement) filtered by teacher, dataset and agreement. Skipped, with a message,
 * only where /usr/bin/chromium is not installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { importPalmRationales } from "../../src/teacher/palm.ts";
import { CHROMIUM, haveChromium, openPage } from "../helpers/browser.ts";
import { startRunServer, type RunServer } from "../helpers/run-server.ts";

if (!haveChromium) console.warn(`dashboard-teacher.test.ts: skipped — ${CHROMIUM} is absent (apt-get install -y chromium)`);

describe.skipIf(!haveChromium)("dashboard: teacher jobs and the rationale browser", () => {
  let server: RunServer;
  let profile: string;
  let context: import("playwright-core").BrowserContext;
  let page: import("playwright-core").Page;
  let jobId: string;

  beforeAll(async () => {
    profile = mkdtempSync(join(tmpdir(), "cot-dash-teacher-"));
    // slow answers, so the job is seen running; the first one cut off (a failure by reason "truncated")
    server = await startRunServer({ experimentsRoot: profile, fake: { fallback: () => ({ kind: "ok", latencyMs: 500 }) } });
    server.stack.fake.script({ kind: "truncated" });
    await importPalmRationales(server.stack.runtime.teacher.store, "svamp", "test");
    const created = await fetch(server.base + "/v1/jobs", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ dataset: "cqa", split: "test", limit: 24, concurrency: 1, model: "gpt-4o-mini" }),
    });
    jobId = ((await created.json()) as { id: string }).id;
    ({ context, page } = await openPage(join(profile, "chromium"), server.base + "/"));
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await server?.close();
    rmSync(profile, { recursive: true, force: true });
  });

  test("a bulk job's progress moves live, then shows done with tokens, cost and failures by reason", async () => {
    const row = page.locator(`#jobs tbody tr[data-id="${jobId}"]`);
    await row.waitFor();
    const progress = () => page.evaluate((id) => (document.querySelector(`#jobs tr[data-id="${id}"] progress`) as HTMLProgressElement).value, jobId);
    await page.waitForFunction((id) => document.querySelector(`#jobs tr[data-id="${id}"] .status`)?.textContent === "running", jobId);
    const early = await progress();
    expect(early).toBeLessThan(24);
    await page.waitForFunction((id) => (document.querySelector(`#jobs tr[data-id="${id}"] progress`) as HTMLProgressElement | null)?.value === 24, jobId, { timeout: 30_000 });
    await page.waitForFunction((id) => document.querySelector(`#jobs tr[data-id="${id}"] .status`)?.textContent === "done", jobId);
    const text = (await row.textContent())!;
    expect(text).toContain("cqa/test");
    expect(text).toContain("gpt-4o-mini");
    expect(text).toContain("24/24");
    expect(text).toContain("truncated 1");
    const snapshot = server.stack.runtime.jobs.require(jobId);
    expect(text).toContain(String(snapshot.tokens));
    expect(text).toContain(`$${snapshot.costUsd.toFixed(4)}`);
  }, 60_000);

  test("the rationale browser shows question, choices, rationale, label and agreement, filtered", async () => {
    const rows = page.locator("#rationales tbody tr");
    await page.selectOption("#f-teacher", "gpt-4o-mini");
    await page.waitForFunction(() => /^23 matching/.test(document.getElementById("rationale-count")?.textContent ?? ""));
    const first = await rows.first().locator("td").allTextContents();
    const stored = server.stack.runtime.teacher.store.browse({ teacher: "gpt-4o-mini" }, 1).rows[0];
    expect(first[0]).toBe("cqa");
    expect(first[2]).toBe(stored.question);
    expect(first[3]).toContain(`(A) ${stored.choices![0].text}`);
    expect(first[4]).toBe(stored.rationale);
    expect(first[5]).toBe(stored.label!);
    expect(first[6]).toBe(stored.answer!);

    await page.selectOption("#f-agrees", "false");
    const disagreeing = server.stack.runtime.teacher.store.browse({ teacher: "gpt-4o-mini", agrees: false }).total;
    await page.waitForFunction((n) => document.getElementById("rationale-count")?.textContent?.startsWith(`${n} matching`), disagreeing);
    expect(new Set(await rows.locator("td:last-child").allTextContents())).toEqual(new Set(["no"]));

    // the other teacher, by dataset: PaLM's SVAMP answers
    await page.selectOption("#f-teacher", "");
    await page.selectOption("#f-agrees", "");
    await page.selectOption("#f-dataset", "svamp");
    const svamp = server.stack.runtime.teacher.store.browse({ dataset: "svamp" }).total;
    await page.waitForFunction((n) => document.getElementById("rationale-count")?.textContent?.startsWith(`${n} matching, newest 50 shown`), svamp);
    expect(new Set(await rows.locator("td:nth-child(2)").allTextContents())).toEqual(new Set(["palm-540b"]));
  }, 60_000);
});
