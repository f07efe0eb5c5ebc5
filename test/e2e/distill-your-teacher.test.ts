/**
 * The whole loop a researcher runs, over real HTTP and real child processes: a fake OpenAI-compatible teacher that
 * refuses n > 1 (and names a dated snapshot as the model that answered) → a bulk job through POST /v1/jobs → the
 * rationale store → `preview` / `train --rationales <teacher>` → `eval`; the same through POST /v1/runs and
 * POST /v1/evaluate; the Batch-API path; the GET /v1/rationales export as a training file; filters and sample
 * modes on answers that disagree with gold; bad input that changes nothing stored. Training stays tiny
 * (scratch-micro, a handful of items, a couple of steps).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadSplit } from "../../src/data/registry.ts";
import type { Item } from "../../src/data/types.ts";
import { openDatabase } from "../../src/store/db.ts";
import { RationaleStore } from "../../src/store/rationales.ts";
import { RunStore } from "../../src/store/runs.ts";
import { runCli } from "../helpers/cli.ts";
import { fakeBatches } from "../helpers/fake-batches.ts";
import { readEvents, startRunServer, until, type RunServer } from "../helpers/run-server.ts";

const TEACHER = "fake-teacher-1";
const SNAPSHOT = `${TEACHER}-0613`;
let server: RunServer;
let train: Item[];

/**
 * The fake teacher's answers, per train item i (position in the split) and sample k of one call:
 *   i % 4 == 0: always gold;  1: gold first, then wrong;  2: wrong first, then gold;  3: always wrong.
 * Samples asked one request each (the teacher refuses n > 1) are all "first" (k = 0) to it.
 */
function answerFor(question: string, labels: string[], k: number): string {
  const stem = question.split("\n")[0];
  const i = train.findIndex((item) => item.question.trim() === stem.trim());
  const gold = i >= 0 ? train[i].answer : labels[0];
  const wrong = labels.find((l) => l !== gold) ?? gold;
  const kind = i % 4;
  return kind === 0 || (kind === 1 && k === 0) || (kind === 2 && k > 0) ? gold : wrong;
}

const post = (path: string, body: unknown) =>
  fetch(server.base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** A bulk job through HTTP, followed over its event stream to the end. */
async function job(body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const created = await post("/v1/jobs", body);
  expect(created.status).toBe(202);
  const { id } = (await created.json()) as { id: string };
  const events = await readEvents(await fetch(`${server.base}/v1/jobs/${id}/events`));
  return events.at(-1)!.data as Record<string, unknown>;
}

const cli = (...args: string[]) => runCli(args);
const dbArgs = () => ["--db", server.stack.dbPath];

function counts(): { rationales: number; runs: number } {
  const db = openDatabase(server.stack.dbPath);
  try {
    return { rationales: new RationaleStore(db).count(), runs: new RunStore(db).list().length };
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  train = await loadSplit("cqa", "train");
  const batches = fakeBatches({ pollsToComplete: 1 });
  // the teacher refuses n > 1, as many OpenAI-compatible servers do; the "sampler" model takes it (to test sample modes)
  server = await startRunServer({ fake: { refuseMultipleSamples: /^fake-teacher/, answeredAs: (m) => `${m}-0613`, answerFor, extend: batches.extend } });
});
afterAll(() => server.close());

describe("distill your own teacher", () => {
  test("bulk job through POST /v1/jobs (n=2 refused: asked one by one): every sample stored, with the model that answered", async () => {
    const done = await job({ dataset: "cqa", split: "train", limit: 24, n: 2, temperature: 0.7, model: TEACHER });
    expect(done).toMatchObject({ status: "done", total: 24, done: 24, failed: 0 });
    const asked = server.stack.fake.requests.filter((r) => r.body.model === TEACHER).map((r) => r.body.n);
    // the calls in flight when the first refusal came back are refused too; after that, one sample per request —
    // and every sample is asked exactly once
    expect(asked.filter((n) => n === 2).length).toBeGreaterThanOrEqual(1);
    expect(asked.filter((n) => n === 2).length).toBeLessThanOrEqual(16);
    expect(asked.filter((n) => n === 1)).toHaveLength(48);
    const records = await Array.fromAsync(server.stack.runtime.teacher.store.list({ dataset: "cqa", model: TEACHER }));
    expect(records).toHaveLength(48);
    expect(new Set(records.map((r) => r.answeredBy))).toEqual(new Set([SNAPSHOT]));
    // half the items (i % 4 == 2 or 3) were answered wrong
    expect(records.filter((r) => r.agrees === false)).toHaveLength(24);
  });

  test("preview --rationales <teacher> shows the stored answer it used", () => {
    const out = cli("preview", "--dataset", "cqa", "--split", "train", "--index", "0", "--placement", "after", "--selection", "full", "--rationales", TEACHER, ...dbArgs(), "--json");
    expect(out.stderr).toBe("");
    const json = JSON.parse(out.stdout);
    const stored = server.stack.runtime.teacher.store.forItem("cqa", train[0].id, TEACHER)[0];
    expect(json.rationale_source).toMatchObject({ source: "store", name: TEACHER, teacher: SNAPSHOT, template: stored.template, sample: 0, key: stored.key, label: train[0].answer, agrees: true });
    expect(json.target).toBe(` (${train[0].answer}) ${stored.rationale}<|endoftext|>`);
    // by the dated snapshot's name too
    const bySnapshot = cli("preview", "--dataset", "cqa", "--split", "train", "--index", "0", "--placement", "after", "--selection", "full", "--rationales", SNAPSHOT, ...dbArgs(), "--json");
    expect(JSON.parse(bySnapshot.stdout).rationale_source.key).toBe(stored.key);
    // an item whose answer disagrees is refused by the default filter, kept with --rationale-filter any
    const wrong = cli("preview", "--dataset", "cqa", "--split", "train", "--index", "3", "--placement", "after", "--selection", "full", "--rationales", TEACHER, ...dbArgs(), "--json");
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/item 3 .* has no training rationale from fake-teacher-1: disagrees .*--rationale-filter any keeps it/);
  });

  let cliRunDir: string;
  test(
    "train --rationales <teacher> then eval: the run records source, teacher, template, filter and drops",
    () => {
      cliRunDir = join(server.stack.dir, "runs", "cli-teacher");
      const trained = cli("train", "--dataset", "cqa", "--placement", "after", "--selection", "full", "--model", "scratch-micro", "--rationales", TEACHER, "--limit", "6", "--epochs", "1", "--batch-size", "4", "--max-seq-length", "96", "--seed", "0", "--out", cliRunDir, ...dbArgs(), "--json");
      expect(trained.code).toBe(0);
      expect(JSON.parse(trained.stdout)).toMatchObject({ steps: 2, examples: 6 });
      const settings = JSON.parse(readFileSync(join(cliRunDir, "run.json"), "utf8"));
      const template = server.stack.runtime.teacher.store.forItem("cqa", train[0].id, TEACHER)[0].template;
      expect(settings.rationales).toBe(TEACHER);
      expect(settings.rationaleSource).toMatchObject({ source: "store", name: TEACHER, teacher: TEACHER, template, filter: "agree", samples: "first", part: "explanation", withRationale: 6, examples: 6 });
      expect(settings.rationaleSource.dropped.disagrees).toBeGreaterThanOrEqual(1);
      expect(settings.rationaleSource.items).toBe(6 + settings.rationaleSource.dropped.disagrees);
      const evaluated = cli("eval", "--run", cliRunDir, "--split", "test", "--limit", "4", ...dbArgs(), "--json");
      expect(evaluated.code).toBe(0);
      const summary = JSON.parse(evaluated.stdout);
      expect(summary).toMatchObject({ dataset: "cqa", split: "test", n: 4 });
      expect(summary.accuracy).toBeGreaterThanOrEqual(0);
    },
    300_000,
  );

  test(
    "the same through POST /v1/runs and POST /v1/evaluate",
    async () => {
      const started = await post("/v1/runs", { name: "http-teacher", dataset: "cqa", model: "scratch-micro", placement: "after", rationales: TEACHER, limit: 6, epochs: 1, training: { batchSize: 4, maxSeqLength: 96 } });
      expect(started.status).toBe(202);
      const run = (await started.json()) as { id: string };
      const done = await until(async () => {
        const now = (await (await fetch(`${server.base}/v1/runs/${run.id}`)).json()) as { status: string; runDir: string };
        if (now.status === "failed") throw new Error(JSON.stringify(now));
        return now.status === "done" ? now : undefined;
      }, "the run");
      const settings = JSON.parse(readFileSync(join(done.runDir, "run.json"), "utf8"));
      // the server passed the name on as a teacher (never as a path it had not resolved)
      expect(settings.rationales).toBe(`teacher:${TEACHER}`);
      expect(settings.rationaleSource).toMatchObject({ source: "store", teacher: TEACHER, examples: 6 });
      const evaluation = (await (await post("/v1/evaluate", { run: run.id, dataset: "cqa", split: "test", limit: 4 })).json()) as { id: string };
      const result = await until(async () => {
        const now = (await (await fetch(`${server.base}/v1/evaluate/${evaluation.id}`)).json()) as { status: string; result?: { n: number } };
        return now.status === "running" ? undefined : now;
      }, "the evaluation");
      expect(result).toMatchObject({ status: "done", result: { n: 4 } });
    },
    300_000,
  );

  test(
    "the GET /v1/rationales export trains as a file: same items as the store",
    async () => {
      const exported = await (await fetch(`${server.base}/v1/rationales?dataset=cqa&split=train&model=${TEACHER}`)).text();
      const file = join(server.stack.dir, "export.jsonl");
      writeFileSync(file, exported);
      const runDir = join(server.stack.dir, "runs", "from-file");
      const trained = cli("train", "--dataset", "cqa", "--placement", "after", "--selection", "full", "--model", "scratch-micro", "--rationales", file, "--limit", "6", "--epochs", "1", "--batch-size", "4", "--max-seq-length", "96", "--seed", "0", "--out", runDir, ...dbArgs(), "--json");
      expect(trained.code).toBe(0);
      const fromFile = JSON.parse(readFileSync(join(runDir, "run.json"), "utf8")).rationaleSource;
      const fromStore = JSON.parse(readFileSync(join(cliRunDir, "run.json"), "utf8")).rationaleSource;
      expect(fromFile).toMatchObject({ source: "file", teacher: SNAPSHOT, template: fromStore.template, items: fromStore.items, examples: 6, dropped: fromStore.dropped });
    },
    300_000,
  );

  test("the Batch-API path stores answers a student can be previewed and trained on", async () => {
    const done = await job({ dataset: "cqa", split: "train", limit: 4, model: "fake-batch-teacher", batch: true });
    expect(done).toMatchObject({ mode: "batch", status: "done", done: 4, failed: 0 });
    const out = cli("preview", "--dataset", "cqa", "--split", "train", "--index", "0", "--placement", "before", "--selection", "full", "--rationales", "fake-batch-teacher", "--rationale-filter", "any", ...dbArgs(), "--json");
    expect(out.stderr).toBe("");
    expect(JSON.parse(out.stdout).rationale_source).toMatchObject({ source: "store", name: "fake-batch-teacher", sample: 0 });
  });

  test("filters and sample modes on answers that disagree with gold", async () => {
    // three samples per item, asked one by one (the fake refuses n > 1): see answerFor for who is right when
    const done = await job({ dataset: "cqa", split: "train", limit: 4, model: "fake-sampler", n: 3, temperature: 0.7 });
    expect(done).toMatchObject({ status: "done", done: 4, failed: 0 });
    const pick = (index: number, ...flags: string[]) => {
      const out = cli("preview", "--dataset", "cqa", "--split", "train", "--index", String(index), "--placement", "after", "--selection", "full", "--rationales", "fake-sampler", ...dbArgs(), "--json", ...flags);
      return out.code === 0 ? JSON.parse(out.stdout).rationale_source : out.stderr.trim();
    };
    // item 1: gold, wrong, wrong
    expect(pick(1)).toMatchObject({ sample: 0, agrees: true, examples: 1 });
    expect(pick(1, "--samples", "all")).toMatchObject({ sample: 0, examples: 1 });
    expect(pick(1, "--samples", "majority")).toMatch(/majority disagrees/);
    expect(pick(1, "--samples", "majority", "--rationale-filter", "any")).toMatchObject({ sample: 1, agrees: false });
    // item 2: wrong, gold, gold
    expect(pick(2)).toMatch(/: disagrees/);
    expect(pick(2, "--rationale-filter", "any")).toMatchObject({ sample: 0, agrees: false });
    expect(pick(2, "--samples", "all")).toMatchObject({ sample: 1, examples: 2 });
    expect(pick(2, "--samples", "majority")).toMatchObject({ sample: 1, agrees: true });
    // item 0: always gold: every sample trains with "all"
    expect(pick(0, "--samples", "all")).toMatchObject({ sample: 0, examples: 3 });
  });

  test("bad input: an unknown teacher lists the store's teachers, a file of another form names the line; nothing stored changes", () => {
    const before = counts();
    const unknown = cli("train", "--dataset", "cqa", "--placement", "after", "--selection", "full", "--model", "scratch-micro", "--rationales", "gpt-nobody", "--epochs", "1", "--seed", "0", "--out", join(server.stack.dir, "runs", "bad"), ...dbArgs());
    expect(unknown.code).toBe(1);
    const line = unknown.stderr.trim();
    expect(line.split("\n")).toHaveLength(1);
    expect(line).toMatch(/--rationales "gpt-nobody": the store .* has no rationales of that teacher for dataset cqa; teachers it has: .*fake-teacher-1 \(48\)/);
    expect(line).toContain("fake-batch-teacher (4)");

    const odd = join(server.stack.dir, "odd.jsonl");
    writeFileSync(odd, `{"id": "x", "rationale": "fine"}\n{"question": "q", "why": "no"}\n`);
    const wrongForm = cli("train", "--dataset", "cqa", "--placement", "after", "--selection", "full", "--model", "scratch-micro", "--rationales", odd, "--epochs", "1", "--seed", "0", "--out", join(server.stack.dir, "runs", "bad2"), ...dbArgs());
    expect(wrongForm.code).toBe(1);
    expect(wrongForm.stderr.trim()).toBe(`cot-distill: ${odd}:2: expected {"id" or "index", "rationale"[, "label", "sample"]} or a line of GET /v1/rationales ({"itemId", "dataset", "model", "template", "sampleIndex", "rationale", "label", …}); found fields question, why`);

    const noModel = runCli(["train", "--dataset", "cqa", "--placement", "after", "--selection", "full", "--model", "gpt2", "--rationales", TEACHER, "--epochs", "1", "--seed", "0", "--out", join(server.stack.dir, "runs", "bad3"), ...dbArgs()], { HF_HUB_CACHE: join(server.stack.dir, "empty-hf-cache") });
    expect(noModel.code).toBe(1);
    expect(noModel.stderr.trim()).toMatch(/--model "gpt2" is neither a model folder nor in the Hugging Face cache \(looked in /);
    expect(counts()).toEqual(before);
  });
});
