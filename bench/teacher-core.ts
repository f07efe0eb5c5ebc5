/**
 * Teacher-core figures (printed, never pass/fail): rationales per second through TeacherService against the fake
 * OpenAI server on loopback (HTTP + SDK + limiter + parse + SQLite, no HTTP service or jobs on top), store-hit
 * latency, the PaLM import, and the real local LLM's latency. Run: bun bench/teacher-core.ts
 * (bench/teacher.ts measures the HTTP service and bulk jobs built on top of this.)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSplit } from "../src/data/registry.ts";
import { openDatabase } from "../src/store/db.ts";
import { RationaleStore } from "../src/store/rationales.ts";
import { TeacherClient } from "../src/teacher/client.ts";
import { loadNodeLlamaCpp, startLocalLlmServer } from "../src/teacher/local-llm.ts";
import { importPalmRationales } from "../src/teacher/palm.ts";
import { TeacherService } from "../src/teacher/service.ts";
import { startFakeOpenAI } from "../test/helpers/fake-openai.ts";

const dir = mkdtempSync(join(tmpdir(), "cot-bench-teacher-core-"));
const items = (await loadSplit("cqa", "train")).slice(0, 2000);

const fake = await startFakeOpenAI();
const teacher = new TeacherService({
  db: openDatabase(join(dir, "fake.sqlite")),
  client: new TeacherClient({ baseURL: fake.baseURL, apiKey: "x", model: "gpt-4o-mini", limits: { maxConcurrency: 32 } }),
});
let t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: 32 }, async () => {
    while (next < items.length) await teacher.rationales({ item: items[next++] });
  }),
);
let seconds = (performance.now() - t0) / 1000;
console.log(`fake teacher, 32 in flight: ${items.length} rationales in ${seconds.toFixed(2)} s = ${(items.length / seconds).toFixed(0)}/s`);
t0 = performance.now();
for (const item of items) await teacher.rationales({ item });
seconds = (performance.now() - t0) / 1000;
console.log(`store hits: ${((seconds / items.length) * 1e6).toFixed(0)} µs per request`);
await fake.stop();

t0 = performance.now();
const report = await importPalmRationales(new RationaleStore(openDatabase(join(dir, "palm.sqlite"))), "cqa", "train");
console.log(`PaLM import cqa/train: ${report.inserted} rationales in ${((performance.now() - t0) / 1000).toFixed(2)} s`);

if ("error" in (await loadNodeLlamaCpp())) console.log("local LLM: skipped (node-llama-cpp unavailable)");
else {
  const server = await startLocalLlmServer({ threads: 1 });
  const local = new TeacherService({
    db: openDatabase(join(dir, "local.sqlite")),
    client: new TeacherClient({ baseURL: server.baseURL, model: server.model }),
    defaults: { temperature: 0.8, maxTokens: 120, stop: ["\n"] },
  });
  t0 = performance.now();
  let tokens = 0;
  let failed = 0;
  for (const item of items.slice(0, 10)) {
    const { samples } = await local.rationales({ item }).catch(() => ({ samples: [], failed: failed++ }));
    tokens += samples[0]?.usage?.completionTokens ?? 0;
  }
  seconds = (performance.now() - t0) / 1000;
  console.log(
    `local stories260K (1 thread): 10 requests in ${seconds.toFixed(2)} s, ${tokens} completion tokens, ${failed} cut off at max_tokens`,
  );
  await server.stop();
}
rmSync(dir, { recursive: true, force: true });
