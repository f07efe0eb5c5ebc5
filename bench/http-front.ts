/**
 * What the header-deadline front of `serve` (src/server/listen.ts) costs: the same Hono app served by Bun.serve
 * directly and through the front, measured in alternating rounds in one process (a loaded machine slows both
 * alike). Prints p50/p99 of sequential keep-alive requests, the throughput of 32 concurrent clients, and the time
 * to stream a 16 MiB answer. Figures only, never pass/fail.
 *
 *   bun bench/http-front.ts [--rounds 4] [--requests 1000]
 */
import { parseArgs } from "node:util";
import { Hono } from "hono";
import { listen } from "../src/server/listen.ts";

const { values } = parseArgs({ options: { rounds: { type: "string", default: "4" }, requests: { type: "string", default: "1000" } } });
const rounds = Number(values.rounds);
const requests = Number(values.requests);
const BIG = new Uint8Array(16 << 20).fill(97);

const app = new Hono()
  .get("/healthz", (c) => c.json({ ok: true }))
  .get("/big", () => new Response(BIG));

const direct = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch, idleTimeout: 30 });
const front = await listen({ hostname: "127.0.0.1", port: 0, fetch: app.fetch, idleTimeoutS: 30, headerTimeoutS: 10 });
const bases = { direct: `http://127.0.0.1:${direct.port}`, front: `http://127.0.0.1:${front.port}` };

const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

async function measure(base: string) {
  const latencies: number[] = [];
  for (let i = 0; i < requests; i++) {
    const t0 = performance.now();
    await (await fetch(`${base}/healthz`)).arrayBuffer();
    latencies.push(performance.now() - t0);
  }
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next++ < requests) await (await fetch(`${base}/healthz`)).arrayBuffer();
    }),
  );
  const concurrentS = (performance.now() - t0) / 1000;
  const s0 = performance.now();
  const bytes = (await (await fetch(`${base}/big`)).arrayBuffer()).byteLength;
  const streamS = (performance.now() - s0) / 1000;
  if (bytes !== BIG.length) throw new Error(`streamed ${bytes} bytes of ${BIG.length}`);
  return { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), rps: requests / concurrentS, mibps: 16 / streamS };
}

const results: Record<keyof typeof bases, Array<Awaited<ReturnType<typeof measure>>>> = { direct: [], front: [] };
await measure(bases.direct); // warm-up (JIT, connections)
await measure(bases.front);
for (let round = 0; round < rounds; round++) {
  for (const name of round % 2 ? (["front", "direct"] as const) : (["direct", "front"] as const)) results[name].push(await measure(bases[name]));
}
const median = (xs: number[]) => quantile(xs, 0.5);
console.log(`load average: ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
for (const name of ["direct", "front"] as const) {
  const r = results[name];
  console.log(
    `${name.padEnd(6)}: sequential p50 ${median(r.map((x) => x.p50)).toFixed(3)} ms, p99 ${median(r.map((x) => x.p99)).toFixed(3)} ms; ` +
      `32 clients ${Math.round(median(r.map((x) => x.rps)))} req/s; 16 MiB streamed at ${Math.round(median(r.map((x) => x.mibps)))} MiB/s`,
  );
}
const ratio = (f: (x: Awaited<ReturnType<typeof measure>>) => number) => median(results.front.map(f)) / median(results.direct.map(f));
console.log(`front / direct: p50 x${ratio((x) => x.p50).toFixed(2)}, throughput x${ratio((x) => x.rps).toFixed(2)}, streaming x${ratio((x) => x.mibps).toFixed(2)} (medians over ${rounds} alternating rounds)`);
direct.stop(true);
await front.stop();
