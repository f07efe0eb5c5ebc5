/**
 * /v1/predict latency over real HTTP against `serve` (a child process on a loopback port), served by its resident
 * inference worker: the first request (cold: worker start, device, kernel compiles, model load) and then WARM
 * requests (p50, p99), beside the cost of the previous design measured in the same run — a fresh process per
 * request that acquires a device, compiles and loads (this file run as `--once`). The student is a scratch-micro
 * run trained here on 16 CQA questions (placement after). Prints figures; never fails on speed.
 *
 *   npm run bench -- predict   (or: bash scripts/bench.sh predict)
 *   bun bench/predict.ts [--warm 30] [--once-runs 3] [--json]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { trainDistillation } from "../src/distill/train.ts";
import { predict } from "../src/eval/index.ts";
import { CLI_PATH, childEnv } from "../src/experiment/runner.ts";

const { values } = parseArgs({ options: { warm: { type: "string" }, "once-runs": { type: "string" }, once: { type: "string" }, json: { type: "boolean" } } });
const QUESTION = { question: "Where would you keep milk cold?", choices: [{ label: "A", text: "refrigerator" }, { label: "B", text: "oven" }, { label: "C", text: "desert" }] };

if (values.once) {
  // the old per-request worker: a process that loads everything for one question
  await predict(values.once, QUESTION.question, QUESTION.choices);
  process.exit(0);
}

const WARM = Number(values.warm ?? 30);
const ONCE_RUNS = Number(values["once-runs"] ?? 3);
const dir = mkdtempSync(join(tmpdir(), "bench-predict-"));
const db = join(dir, "runs.sqlite");
const runsDir = join(dir, "runs");

const percentile = (xs: number[], p: number) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

let server: ReturnType<typeof Bun.spawn> | null = null;
try {
  const run = await trainDistillation(
    { name: "bench-predict", dataset: "cqa", model: "scratch-micro", placement: "after", selection: { kind: "shuffled" }, limit: 16, epochs: 1, training: { batchSize: 4, maxSeqLength: 96 } },
    { outDir: join(runsDir, "bench-predict"), db, log: () => {} },
  );
  server = Bun.spawn([process.execPath, CLI_PATH, "serve", "--port", "0", "--db", db, "--runs-dir", runsDir, "--max-processes", "1"], { env: childEnv(), stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  // the listening line tells the port
  const reader = (server.stderr as ReadableStream<Uint8Array>).getReader();
  let text = "";
  let base = "";
  while (!base) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`serve exited: ${text}`);
    text += new TextDecoder().decode(value);
    base = /listening on (http:\/\/\S+)/.exec(text)?.[1] ?? "";
  }
  void (async () => {
    while (!(await reader.read()).done);
  })();
  const ask = async () => {
    const started = performance.now();
    const response = await fetch(`${base}/v1/predict`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ run: run.runId, ...QUESTION }) });
    if (response.status !== 200) throw new Error(`predict: HTTP ${response.status} ${await response.text()}`);
    await response.json();
    return performance.now() - started;
  };
  const cold = await ask();
  const warm: number[] = [];
  for (let i = 0; i < WARM; i++) warm.push(await ask());
  const once: number[] = [];
  for (let i = 0; i < ONCE_RUNS; i++) {
    const started = performance.now();
    const child = Bun.spawn([process.execPath, import.meta.path, "--once", run.runDir], { env: childEnv(), stdout: "ignore", stderr: "ignore" });
    if ((await child.exited) !== 0) throw new Error("one-shot predict failed");
    once.push(performance.now() - started);
  }
  const result = {
    coldMs: cold, warmP50Ms: percentile(warm, 50), warmP99Ms: percentile(warm, 99), warmRequests: WARM,
    processPerRequestP50Ms: percentile(once, 50), processPerRequestRuns: ONCE_RUNS,
  };
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log(`/v1/predict over HTTP (scratch-micro student): cold first request ${cold.toFixed(0)} ms; warm p50 ${result.warmP50Ms.toFixed(1)} ms, p99 ${result.warmP99Ms.toFixed(1)} ms over ${WARM}`);
    console.log(`a fresh process per request (the previous design): p50 ${result.processPerRequestP50Ms.toFixed(0)} ms over ${ONCE_RUNS} (×${(result.processPerRequestP50Ms / result.warmP50Ms).toFixed(0)} the warm p50)`);
  }
} finally {
  server?.kill();
  await server?.exited;
  rmSync(dir, { recursive: true, force: true });
}
