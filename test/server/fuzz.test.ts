/**
 * A bounded, seeded fuzz over every request schema the server publishes at /v1/schema, over real HTTP: each body
 * is a valid one with one field broken as the JSON Schema says it can be (wrong type, out of range, too long, off
 * pattern, outside the enum, unknown key, missing key, not an object), checked to be invalid by the valibot schema
 * itself before it is sent. Every one must be a 400 with issues — never a 5xx, never work started — plus raw
 * garbage (not JSON, wrong content type, deep nesting, oversized) and path-like ids are 4xx, and the server
 * answers normally afterwards.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import * as v from "valibot";
import { seededRandom } from "../../src/data/random.ts";
import { requestSchemas } from "../../src/server/schemas.ts";
import { runRequestSchemas } from "../../src/server/routes/run-schemas.ts";
import { startRunServer, type RunServer } from "../helpers/run-server.ts";

const SEED = 20_261_201;
const BODIES_PER_SCHEMA = 80;

/** Where each published schema is used, and a valid value to break one field of (never sent as is). */
const ROUTES: Record<string, { method: "GET" | "POST"; path: string; target: "json" | "query"; valid: Record<string, unknown> }> = {
  RationaleRequest: { method: "POST", path: "/v1/rationales", target: "json", valid: { question: "Where?", choices: [{ label: "A", text: "here" }, { label: "B", text: "there" }] } },
  RationaleListQuery: { method: "GET", path: "/v1/rationales", target: "query", valid: { dataset: "cqa", split: "test" } },
  FailureListQuery: { method: "GET", path: "/v1/rationales/failures", target: "query", valid: { dataset: "cqa", split: "test" } },
  RationaleBrowseQuery: { method: "GET", path: "/v1/rationales/browse", target: "query", valid: { dataset: "cqa", limit: "5" } },
  JobRequest: { method: "POST", path: "/v1/jobs", target: "json", valid: { dataset: "cqa", split: "test", limit: 1 } },
  JobResume: { method: "POST", path: "/v1/jobs/job_x/resume", target: "json", valid: { maxCostUsd: 1 } },
  RunRequest: { method: "POST", path: "/v1/runs", target: "json", valid: { dataset: "cqa", placement: "after", limit: 1 } },
  // the run spec is POST /v1/runs' body (RunRequest is it, published under both names)
  RunSpec: { method: "POST", path: "/v1/runs", target: "json", valid: { dataset: "cqa", placement: "after", selection: { kind: "key", k: 2 }, limit: 1, training: { batchSize: 2 } } },
  EvaluateRequest: { method: "POST", path: "/v1/evaluate", target: "json", valid: { run: "x", dataset: "cqa" } },
  PredictRequest: { method: "POST", path: "/v1/predict", target: "json", valid: { run: "x", question: "Why?" } },
};
const SCHEMAS: Record<string, v.GenericSchema> = { ...requestSchemas, ...runRequestSchemas };

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
}

const NASTY_STRINGS = ["", " ", "../../etc/passwd", "/etc/passwd", "..", "\u0000", "%2e%2e%2f", "x".repeat(20_000), "<script>", "é🙂", "\\\\?\\C:\\"];
const NASTY_NUMBERS = [-1, 0, 0.5, -0.0001, 1e300, -1e300, 2 ** 53 + 1, 1e-300, 4294967296, 65_537];

/** Values a field could be broken to, guided by what its JSON Schema says. */
function breakings(schema: JsonSchema): unknown[] {
  const out: unknown[] = [null, true, {}, [], "not-a-number", 12345, { nested: { deep: [1, 2, 3] } }];
  if (schema.maximum !== undefined) out.push(schema.maximum + 1, schema.maximum * 10 + 1);
  if (schema.minimum !== undefined) out.push(schema.minimum - 1);
  if (schema.exclusiveMinimum !== undefined) out.push(schema.exclusiveMinimum);
  if (schema.maxLength !== undefined) out.push("y".repeat(schema.maxLength + 1));
  if (schema.enum) out.push(`${String(schema.enum[0])}-not`, String(schema.enum[0]).toUpperCase());
  if (schema.items) out.push([null], ["x"], Array.from({ length: 200 }, () => ({})));
  return [...out, ...NASTY_STRINGS, ...NASTY_NUMBERS];
}

function mutate(valid: Record<string, unknown>, schema: JsonSchema, random: () => number): unknown {
  const pick = <T>(list: T[]): T => list[Math.floor(random() * list.length)];
  const properties = Object.entries(schema.properties ?? {});
  const roll = random();
  if (roll < 0.06) return pick([null, [], 42, "body", [valid]]);
  if (roll < 0.14) return { ...valid, [pick(["unknown", "__proto__x", "constructor", "learningRate"])]: pick([1, "x", null]) };
  if (roll < 0.22 && schema.required?.length) {
    const { [pick(schema.required)]: _dropped, ...rest } = valid;
    return rest;
  }
  const [name, field] = pick(properties);
  return { ...valid, [name]: pick(breakings(field)) };
}

/** JSON bodies as query strings: every value a string, as a URL carries it. */
function asQuery(body: unknown): string {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return `?raw=${encodeURIComponent(JSON.stringify(body))}`;
  return `?${new URLSearchParams(Object.entries(body).map(([k, value]) => [k, typeof value === "string" ? value : JSON.stringify(value)]))}`;
}

let server: RunServer;
beforeAll(async () => {
  server = await startRunServer();
});
afterAll(() => server.close());

test("every published schema has a route here (a new schema must join the fuzz)", async () => {
  const published = (await (await fetch(`${server.base}/v1/schema`)).json()) as Record<string, unknown>;
  expect(Object.keys(published).sort()).toEqual(Object.keys(ROUTES).sort());
});

test(
  `seeded fuzz: ${BODIES_PER_SCHEMA} broken bodies per schema are each a 400 with issues, nothing is started, the server stays up`,
  async () => {
    const published = (await (await fetch(`${server.base}/v1/schema`)).json()) as Record<string, JsonSchema>;
    const random = seededRandom(SEED);
    const folders = readdirSync(server.runsRoot);
    const statuses = new Map<number, number>();
    let sent = 0;
    for (const [name, route] of Object.entries(ROUTES)) {
      const schema = published[name];
      for (let i = 0, tries = 0; i < BODIES_PER_SCHEMA && tries < BODIES_PER_SCHEMA * 20; tries++) {
        const body = mutate(route.valid, schema, random);
        const asSent = route.target === "query" ? Object.fromEntries(new URLSearchParams(asQuery(body))) : body;
        if (v.safeParse(SCHEMAS[name], asSent).success) continue; // broke nothing: not a bad body
        i++;
        sent++;
        const url = `${server.base}${route.path}${route.target === "query" ? asQuery(body) : ""}`;
        const response =
          route.target === "query"
            ? await fetch(url)
            : await fetch(url, { method: route.method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        if (url.length > 8_000 && response.status === 431) continue; // Bun refuses the oversized URL itself
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        const answer = (await response.json()) as { error?: string; issues?: unknown[] };
        if (response.status !== 400) throw new Error(`${name} ${JSON.stringify(body).slice(0, 300)} → ${response.status} ${JSON.stringify(answer)}`);
        expect(answer.issues?.length ?? 0).toBeGreaterThan(0);
      }
    }
    expect(sent).toBe(BODIES_PER_SCHEMA * Object.keys(ROUTES).length);
    expect([...statuses.keys()]).toEqual([400]);
    expect(readdirSync(server.runsRoot)).toEqual(folders); // no run was started
    expect(server.supervisor.evaluations.size).toBe(0);
    expect((await fetch(`${server.base}/healthz`)).status).toBe(200);
    expect((await fetch(`${server.base}/v1/runs`)).status).toBe(200);
  },
  120_000,
);

test("raw garbage and path-like ids are 4xx, and the server answers normally after", async () => {
  const random = seededRandom(SEED + 1);
  const garbage: Array<[string, RequestInit]> = [
    ["not JSON", { body: "{\"dataset\": cqa", headers: { "content-type": "application/json" } }],
    ["wrong content type", { body: "dataset=cqa", headers: { "content-type": "application/x-www-form-urlencoded" } }],
    ["no body", { headers: { "content-type": "application/json" } }],
    ["deep nesting", { body: "[".repeat(100_000) + "]".repeat(100_000), headers: { "content-type": "application/json" } }],
    ["oversized", { body: JSON.stringify({ question: "x".repeat(2 << 20) }), headers: { "content-type": "application/json" } }],
    ["random bytes", { body: Uint8Array.from({ length: 4096 }, () => Math.floor(random() * 256)), headers: { "content-type": "application/json" } }],
  ];
  for (const route of Object.values(ROUTES).filter((r) => r.method === "POST")) {
    for (const [what, init] of garbage) {
      const response = await fetch(server.base + route.path, { method: "POST", ...init });
      if (response.status < 400 || response.status >= 500) throw new Error(`${route.path} ${what} → ${response.status}`);
    }
  }
  const ids = ["..", "../../etc", "%2e%2e%2fetc", "%00", "x".repeat(5_000), "run-%ff", "a b", "null", "__proto__"];
  for (const id of ids) {
    for (const [method, path] of [["GET", `/v1/runs/${id}`], ["DELETE", `/v1/runs/${id}`], ["POST", `/v1/runs/${id}/cancel`], ["GET", `/v1/runs/${id}/metrics`], ["GET", `/v1/evaluate/${id}`], ["DELETE", `/v1/evaluate/${id}`], ["GET", `/v1/jobs/${id}`], ["POST", `/v1/jobs/${id}/cancel`]]) {
      const response = await fetch(server.base + path, { method });
      if (response.status < 400 || response.status >= 500) throw new Error(`${method} ${path.slice(0, 80)} → ${response.status}`);
    }
  }
  expect((await fetch(`${server.base}/healthz`)).status).toBe(200);
  expect((await fetch(`${server.base}/v1/schema`)).status).toBe(200);
});
