/** The fake teacher in a process of its own for benchmarks: `bun bench/fake-teacher.ts <latency ms>` prints its URL. */
import { startFakeOpenAI } from "../test/helpers/fake-openai.ts";

const latencyMs = Number(process.argv[2] ?? 50);
const fake = await startFakeOpenAI({ fallback: () => ({ kind: "ok", latencyMs }) });
console.log(fake.baseURL);
