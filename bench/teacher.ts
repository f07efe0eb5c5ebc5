/**
 * Teacher service throughput and stored-hit latency (prints figures; never fails).
 *
 *  1. A bulk job over N items at concurrency 64 against the fake teacher answering in a fixed 50 ms: time as a
 *     fraction of the ideal N × 50 ms / 64 (claim, call, store, mark done: all our overhead shows up here).
 *  2. The same over HTTP: 64 clients POSTing distinct questions to /v1/rationales on loopback.
 *  3. p50/p99 of a stored hit over HTTP (POST /v1/rationales for a question already in the store).
 * Targets: ≥ 95% of ideal; p99 < 5 ms.
 *
 *   bun bench/teacher.ts [--items 1280] [--hits 2000]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadSplit } from "../src/data/registry.ts";
import { createApp } from "../src/server/app.ts";
import { openTeacherRuntime } from "../src/teacher/runtime.ts";
import { startFakeOpenAI } from "../test/helpers/fake-openai.ts";

const LATENCY_MS = 50;
const CONCURRENCY = 64;

const { values } = parseArgs({ options: { items: { type: "string", default: "1280" }, hits: { type: "string", default: "2000" } } });
const itemCount = Number(values.items);
const hitCount = Number(values.hits);

const fake = await startFakeOpenAI({ fallback: () => ({ kind: "ok", latencyMs: LATENCY_MS }) });
const dir = mkdtempSync(join(tmpdir(), "cot-distill-bench-"));
const runtime = openTeacherRuntime({
  dbPath: join(dir, "bench.sqlite"),
  client: { baseURL: fake.baseURL, apiKey: "bench", limits: { maxConcurrency: CONCURRENCY } },
});
const app = createApp(runtime.appDeps());
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch, idleTimeout: 0 });
const base = `http://127.0.0.1:${server.port}`;

const ideal = (n: number) => (n * LATENCY_MS) / CONCURRENCY;
const percent = (x: number) => `${(100 * x).toFixed(1)}%`;
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

function report(name: string, n: number, ms: number) {
  console.log(`${name}: ${n} requests in ${ms.toFixed(0)} ms; ideal ${ideal(n).toFixed(0)} ms → ${percent(ideal(n) / ms)} of ideal (target ≥ 95%)`);
}

// 1. bulk job (cqa train; the HTTP part below uses test items so nothing is a store hit by accident)
{
  const t0 = performance.now();
  const job = await runtime.jobs.create({ dataset: "cqa", split: "train", limit: itemCount, concurrency: CONCURRENCY });
  const done = await runtime.jobs.settled(job.id);
  const ms = performance.now() - t0;
  report(`bulk job (${done.done} done, ${done.failed} failed, max in flight ${fake.maxInFlight})`, done.done, ms);
}

// 2. 64 HTTP clients, distinct questions
{
  const items = (await loadSplit("cqa", "test")).slice(0, Math.min(itemCount, 1221));
  let next = 0;
  const post = (body: unknown) =>
    fetch(`${base}/v1/rationales`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < items.length) {
        const { question, choices, answer, dataset, split, id } = items[next++];
        const res = await post({ question, choices, answer, dataset, split, id });
        if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
        await res.arrayBuffer();
      }
    }),
  );
  report("HTTP POST /v1/rationales ×64 clients", items.length, performance.now() - t0);

  // 3. stored hits, one at a time
  const { question, choices, answer, dataset, split, id } = items[0];
  const body = JSON.stringify({ question, choices, answer, dataset, split, id });
  const latencies: number[] = [];
  for (let i = 0; i < hitCount + 100; i++) {
    const t = performance.now();
    const res = await fetch(`${base}/v1/rationales`, { method: "POST", headers: { "content-type": "application/json" }, body });
    const json = (await res.json()) as { samples: { fromStore: boolean }[] };
    if (!json.samples[0].fromStore) throw new Error("expected a stored hit");
    if (i >= 100) latencies.push(performance.now() - t); // the first 100 warm up the JIT and connections
  }
  latencies.sort((a, b) => a - b);
  console.log(
    `stored hit over HTTP (${hitCount}): p50 ${quantile(latencies, 0.5).toFixed(2)} ms, p99 ${quantile(latencies, 0.99).toFixed(2)} ms (target p99 < 5 ms)`,
  );
}

server.stop(true);
await runtime.close();
await fake.stop();
rmSync(dir, { recursive: true, force: true });
