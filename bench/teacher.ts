/**
 * Teacher service throughput and stored-hit latency (prints figures; never fails).
 *
 *  0. The ceiling of this machine and harness: the bare TeacherClient, 64 calls in flight, no store, no job.
 *  1. A bulk job over N items at concurrency 64 against the fake teacher answering in a fixed 50 ms: time as a
 *     fraction of the ideal N × 50 ms / 64 (claim, call, store, mark done: all our overhead shows up here).
 *  2. The same over HTTP: 64 clients POSTing distinct questions to /v1/rationales of a real `serve` child process.
 *  3. p50/p99 of a stored hit over HTTP (POST /v1/rationales for a question already in the store).
 * Targets: ≥ 95% of ideal; p99 < 5 ms. Everything is warmed up first (JIT, connections): a cold start costs more
 * than the whole overhead being measured. The fake teacher runs in a child process; on a loaded machine (check
 * the load average) all figures drop together, so compare 1 and 2 with 0 — and the CPU time per request of our
 * process (0 and 1: this one; 2: the `serve` child), which the load barely moves: it is our overhead.
 *
 *   bun bench/teacher.ts [--items 2560] [--hits 2000]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadSplit } from "../src/data/registry.ts";
import { teacherItem } from "../src/teacher/jobs.ts";
import { openTeacherRuntime } from "../src/teacher/runtime.ts";

const LATENCY_MS = 50;
const CONCURRENCY = 64;

const { values } = parseArgs({ options: { items: { type: "string", default: "2560" }, hits: { type: "string", default: "2000" } } });
const itemCount = Number(values.items);
const hitCount = Number(values.hits);

// The fake teacher runs in its own process, as a real teacher would: it must not share our event loop.
const { proc: fakeProc, match: fakeURL } = await spawnAndRead(
  [process.execPath, join(import.meta.dir, "fake-teacher.ts"), String(LATENCY_MS)],
  /(http:\S+)/,
  "stdout",
);
const dir = mkdtempSync(join(tmpdir(), "cot-distill-bench-"));
const runtime = openTeacherRuntime({
  dbPath: join(dir, "bench.sqlite"),
  client: { baseURL: fakeURL, apiKey: "bench", limits: { maxConcurrency: CONCURRENCY } },
});

/** Starts a child process; resolves with it and the first group of `pattern` once its output shows it. */
async function spawnAndRead(cmd: string[], pattern: RegExp, stream: "stdout" | "stderr", env: Record<string, string> = {}) {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env }, cwd: join(import.meta.dir, "..") });
  const reader = (proc[stream] as ReadableStream<Uint8Array>).getReader();
  let text = "";
  for (;;) {
    const m = pattern.exec(text);
    if (m) return { proc, match: m[1] };
    const chunk = await reader.read();
    if (chunk.done) throw new Error(`${cmd.join(" ")} exited: ${text}`);
    text += new TextDecoder().decode(chunk.value);
  }
}

const ideal = (n: number) => (n * LATENCY_MS) / CONCURRENCY;
const percent = (x: number) => `${(100 * x).toFixed(1)}%`;
const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

function report(name: string, n: number, ms: number, cpuMs: number) {
  console.log(
    `${name}: ${n} requests in ${ms.toFixed(0)} ms; ideal ${ideal(n).toFixed(0)} ms → ${percent(ideal(n) / ms)} of ideal ` +
      `(target ≥ 95%); CPU ${((1000 * cpuMs) / n).toFixed(0)} µs/request`,
  );
}

/** CPU time (user + system) of this process in ms. */
const ownCpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** CPU time of another process in ms, from /proc (Linux; clock ticks of 10 ms), NaN elsewhere. */
function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14 and 15 of the line)
  } catch {
    return NaN;
  }
}

/** Wall and CPU time (of `cpuMs`' process) of `work`, in ms. */
async function measure(work: () => Promise<unknown>, cpuMs: () => number = ownCpuMs): Promise<{ ms: number; cpuMs: number }> {
  const cpu0 = cpuMs();
  const t0 = performance.now();
  await work();
  return { ms: performance.now() - t0, cpuMs: cpuMs() - cpu0 };
}

/** `count` calls of `call(i)` with 64 in flight. */
async function in64(count: number, call: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) await call(next++);
  }));
}

console.log(`load average: ${(await Bun.file("/proc/loadavg").text().catch(() => "?")).split(" ").slice(0, 3).join(" ")}`);
const train = await loadSplit("cqa", "train");
// warm-up on items the measured runs do not use
await runtime.jobs.settled((await runtime.jobs.create({ dataset: "cqa", split: "train", limit: 512, concurrency: CONCURRENCY })).id);

// 0. ceiling: the bare client on prompts of the real size
{
  const { request } = runtime.teacher.plan({ item: teacherItem(train[0]) });
  const { ms, cpuMs } = await measure(() =>
    in64(itemCount, (i) => runtime.teacher.client.complete({ ...request, prompt: `${request.prompt} ${i}` })),
  );
  report("ceiling: bare client, no store", itemCount, ms, cpuMs);
}

// 1. bulk job (cqa train; the HTTP part below uses test items so nothing is a store hit by accident)
{
  // items 512.. (the warm-up took the first 512 from the store)
  let done!: Awaited<ReturnType<typeof runtime.jobs.settled>>;
  let createMs = 0;
  const { ms, cpuMs } = await measure(async () => {
    const t0 = performance.now();
    const job = await runtime.jobs.create({ dataset: "cqa", split: "train", limit: 512 + itemCount, concurrency: CONCURRENCY });
    createMs = performance.now() - t0;
    done = await runtime.jobs.settled(job.id);
  });
  if (done.cached !== 512) console.log(`(unexpected: ${done.cached} cached)`);
  report(`bulk job (${done.done - done.cached} asked, ${done.failed} failed)`, done.done - done.cached, ms, cpuMs);
  // a fixed cost inside the figure above, which a bigger job spreads thinner
  console.log(`  of which creating the job (loading and enumerating ${done.total} items): ${createMs.toFixed(0)} ms`);
}

// 2. 64 HTTP clients, distinct questions, against `serve` (its own database; warmed up on other items)
{
  const { proc: serveProc, match: base } = await spawnAndRead(
    [process.execPath, "src/cli.ts", "serve", "--port", "0", "--db", join(dir, "serve.sqlite"), "--max-concurrency", String(CONCURRENCY)],
    /listening on (http:\S+)/,
    "stderr",
    { OPENAI_BASE_URL: fakeURL, OPENAI_API_KEY: "bench" },
  );
  const items = (await loadSplit("cqa", "test")).slice(0, Math.min(itemCount, 1221));
  const post = (body: unknown) =>
    fetch(`${base}/v1/rationales`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const ask = (item: (typeof items)[number]) => async () => {
    const { question, choices, answer, dataset, split, id } = item;
    const res = await post({ question, choices, answer, dataset, split, id });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
  };
  await in64(512, (i) => ask(train[i + 5000])());
  const { ms, cpuMs } = await measure(() => in64(items.length, (i) => ask(items[i])()), () => cpuMsOf(serveProc.pid));
  report("HTTP POST /v1/rationales ×64 clients (CPU: the serve process)", items.length, ms, cpuMs);

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
  serveProc.kill("SIGTERM");
  await serveProc.exited;
}

await runtime.close();
fakeProc.kill();
rmSync(dir, { recursive: true, force: true });
