/**
 * The dashboard as a person sees it, in headless Chromium (Debian's /usr/bin/chromium through playwright-core),
 * against the real app on a loopback port: a finished run and a running one in the database, an experiment grid's
 * results on disk. Checks the runs table (names, statuses), the loss curves (drawn, and growing while a run trains)
 * and the results table. Skipped, with a message, only where /usr/bin/chromium is not installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeResultTables } from "../../src/experiment/results.ts";
import { CHROMIUM, haveChromium, openPage } from "../helpers/browser.ts";
import { startRunServer, type RunServer } from "../helpers/run-server.ts";

if (!haveChromium) console.warn(`dashboard.test.ts: skipped — ${CHROMIUM} is absent (apt-get install -y chromium)`);

const metricsLine = (step: number) => `${JSON.stringify({ step, loss: 6 / step, lr: 1e-3, grad_norm: 1, tokens_per_s: 100, tokens: 10, elapsed_s: step })}\n`;

describe.skipIf(!haveChromium)("dashboard in a browser", () => {
  let server: RunServer;
  let experiments: string;
  let profile: string;
  let liveMetrics: string;
  let liveId: string;
  // playwright-core's types, loaded only when the browser exists
  let context: import("playwright-core").BrowserContext;
  let page: import("playwright-core").Page;

  beforeAll(async () => {
    experiments = mkdtempSync(join(tmpdir(), "cot-dash-"));
    profile = join(experiments, "chromium-profile");
    await writeResultTables(
      [0, 1, 2].flatMap((seed) => [
        { condition: { condition: "none" }, seed, accuracy: 0.3 + seed / 100 },
        { condition: { condition: "after-shuffled" }, seed, accuracy: 0.4 + seed / 100 },
      ]),
      join(experiments, "paper-mini"),
      {
        chance: 0.2,
        comparisons: [
          { a: "after-shuffled", b: "none", seeds: [0, 1, 2], items: 50, difference: 0.1, ci95: [0.04, 0.16], p: 0.0021, seedDifferences: [0.1, 0.1, 0.1], seedCi95: null, seedP: null, wins: 20, losses: 5 },
        ],
      },
    );
    server = await startRunServer({ experimentsRoot: experiments });
    const runs = server.supervisor.runs;

    // run folders inside the server's runs root: a run kept elsewhere is not the server's to read
    const doneDir = join(server.runsRoot, "finished");
    mkdirSync(doneDir, { recursive: true });
    writeFileSync(join(doneDir, "metrics.jsonl"), [1, 2, 3, 4, 5, 6].map(metricsLine).join(""));
    const done = runs.register({ name: "finished-after-full", runDir: doneDir, config: { dataset: "cqa", placement: "after", selection: { kind: "full" }, model: "scratch-micro" } });
    runs.markRunning(done.id);
    runs.markDone(done.id, { steps: 6, final_loss: 1, test_accuracy: 0.25 });

    const liveDir = join(server.runsRoot, "live");
    mkdirSync(liveDir, { recursive: true });
    liveMetrics = join(liveDir, "metrics.jsonl");
    writeFileSync(liveMetrics, [1, 2].map(metricsLine).join(""));
    const live = runs.register({ name: "live-before-shuffled", runDir: liveDir, config: { dataset: "cqa", placement: "before", selection: { kind: "shuffled" }, model: "scratch-micro" } });
    runs.markRunning(live.id);
    liveId = live.id;

    // a teacher job where 1 of 4 answers had no readable label and 1 named two
    server.stack.fake.script({ kind: "no_label" }, { kind: "ok", content: "Hard. So the answer is either (a) or (b)." });
    const jobs = server.stack.runtime.jobs;
    await jobs.settled((await jobs.create({ dataset: "cqa", split: "test", limit: 4, concurrency: 1 })).id);

    ({ context, page } = await openPage(profile, server.base + "/"));
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await server?.close();
    rmSync(experiments, { recursive: true, force: true });
  });

  test("the runs table shows each run's name and status", async () => {
    const row = (name: string) => page.locator("#runs tbody tr", { hasText: name });
    await row("finished-after-full").waitFor();
    expect(await row("finished-after-full").locator(".status").textContent()).toBe("done");
    expect(await row("live-before-shuffled").locator(".status").textContent()).toBe("running");
    expect(await row("live-before-shuffled").textContent()).toContain("before-shuffled");
    expect(await row("finished-after-full").textContent()).toContain("0.250");
  });

  test("loss curves are drawn, and the running one grows as metrics arrive", async () => {
    const points = (id: string) =>
      page.evaluate((run) => {
        const curve = document.querySelector(`#loss polyline[data-run="${run}"]`);
        return curve ? (curve.getAttribute("points") ?? "").trim().split(/\s+/).length : 0;
      }, id);
    await page.waitForFunction(() => document.querySelectorAll("#loss polyline.loss-curve").length === 2);
    expect(await points(liveId)).toBe(2);
    expect(await page.locator("#legend").textContent()).toContain("finished-after-full");

    appendFileSync(liveMetrics, [3, 4, 5].map(metricsLine).join(""));
    await page.waitForFunction((run) => {
      const curve = document.querySelector(`#loss polyline[data-run="${run}"]`);
      return (curve?.getAttribute("points") ?? "").trim().split(/\s+/).length === 5;
    }, liveId);
    // lower loss is drawn lower: the last point of a falling curve sits below its first (SVG y grows downwards)
    const ys = await page.evaluate((run) => {
      const pts = document.querySelector(`#loss polyline[data-run="${run}"]`)!.getAttribute("points")!.trim().split(/\s+/);
      return pts.map((p) => Number(p.split(",")[1]));
    }, liveId);
    expect(ys.at(-1)!).toBeGreaterThan(ys[0]);
  });

  test("the teacher answers table shows each job's parse-failure rate and failures by kind", async () => {
    const row = page.locator("#answers tbody tr", { hasText: "cqa/test" });
    await row.waitFor();
    expect(await row.locator(".parse-rate").textContent()).toBe("50.0%");
    expect(await row.locator(".kinds").textContent()).toBe("ambiguous 1 (25.0%), no_answer 1 (25.0%)");
  });

  test("the experiment results table lists each condition with its mean and CI", async () => {
    const table = page.locator("#experiments table.results");
    await table.waitFor();
    expect(await page.locator("#experiments .grid-name").textContent()).toBe("paper-mini");
    const rows = await table.locator("tr").allTextContents();
    expect(rows.some((r) => r.includes("after-shuffled") && r.includes("0.410"))).toBe(true);
    expect(rows.some((r) => r.startsWith("none") && r.includes("0.310"))).toBe(true);
    const paired = await page.locator("#experiments table.comparisons tr").allTextContents();
    expect(paired.some((r) => r.startsWith("after-shuffled vs none") && r.includes("0.100") && r.includes("[0.040, 0.160]") && r.includes("0.002"))).toBe(true);
  });
});
