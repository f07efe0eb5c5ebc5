import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Database } from "bun:sqlite";
import { openDatabase } from "../../src/store/db.ts";
import { keyOfRecord, RationaleStore } from "../../src/store/rationales.ts";
import { TeacherClient, type TeacherClientOptions } from "../../src/teacher/client.ts";
import { loadTemplate } from "../../src/teacher/prompts.ts";
import { TeacherError, TeacherService, type RationaleSample, type TeacherItem } from "../../src/teacher/service.ts";
import { startFakeOpenAI, type Behaviour } from "../helpers/fake-openai.ts";

const API_KEY = "sk-test-Zq8vXw3RkP0dLm5Ty7Hs";
const fake = await startFakeOpenAI({ apiKey: API_KEY });
const dir = mkdtempSync(join(tmpdir(), "cot-teacher-service-"));
afterAll(async () => {
  await fake.stop();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => void (fake.requests.length = 0));

let dbCount = 0;
function service(clientOptions: TeacherClientOptions = {}, dbPath = join(dir, `t${dbCount++}.sqlite`)) {
  const db = openDatabase(dbPath);
  const client = new TeacherClient({
    baseURL: fake.baseURL,
    apiKey: API_KEY,
    model: "gpt-4o-mini",
    timeoutMs: 2000,
    retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
    ...clientOptions,
  });
  return { teacher: new TeacherService({ db, client, defaults: { maxTokens: 128 } }), db, dbPath };
}

const cqaItem: TeacherItem = {
  dataset: "cqa",
  split: "train",
  id: "075e483d21c29a511267ef62bedc0461",
  question: "The sanctions against the school were a punishing blow, and they seemed to what the efforts the school had made to change?",
  choices: ["ignore", "enforce", "authoritarian", "yell at", "avoid"].map((text, i) => ({ label: "ABCDE"[i], text })),
  answer: "A",
};

const mathItem: TeacherItem = { question: "Dan has 12 marbles and finds 30 more. How many marbles does Dan have now?", answer: "42", format: "math" };

describe("TeacherService", () => {
  test("a rationale is asked for once: the second request is served from the store", async () => {
    const { teacher } = service();
    const first = await teacher.rationales({ item: cqaItem });
    expect(fake.requests).toHaveLength(1);
    const [sample] = first.samples;
    expect(sample).toMatchObject({ fromStore: false, sampleIndex: 0, model: "gpt-4o-mini" });
    expect(sample.label).toMatch(/^[A-E]$/);
    expect(sample.rationale.length).toBeGreaterThan(10);
    expect(sample.rationale).not.toContain("So the answer is");
    expect(sample.usage!.promptTokens).toBeGreaterThan(100); // the few-shot prompt was sent
    expect(sample.costUsd).toBeGreaterThan(0);
    expect(fake.requests[0].body.messages[0].content).toContain("Answer Choices: (a) ignore (b) enforce");
    expect(fake.requests[0].body.stop).toEqual(["\n\nQ:"]);

    const again = await teacher.rationales({ item: cqaItem });
    expect(fake.requests).toHaveLength(1);
    expect(again.samples[0]).toEqual({ ...sample, fromStore: true });
    const stored = teacher.store.get(sample.key)!;
    expect(stored).toMatchObject({ dataset: "cqa", split: "train", itemId: cqaItem.id, source: "teacher", agrees: sample.agrees });
    expect(stored.rawCompletion).toContain("So the answer is");
    expect(stored.params).toEqual({ temperature: 0, maxTokens: 128 });
  });

  test("other params, model or sample index are different answers; the same params are not", async () => {
    const { teacher } = service();
    await teacher.rationales({ item: mathItem });
    await teacher.rationales({ item: mathItem, params: { temperature: 0 } });
    expect(fake.requests).toHaveLength(1);
    await teacher.rationales({ item: mathItem, params: { temperature: 0.7 } });
    await teacher.rationales({ item: mathItem, params: { model: "gpt-4.1-nano" } });
    expect(fake.requests).toHaveLength(3);
    expect(fake.requests[2].body.model).toBe("gpt-4.1-nano");
  });

  test("20 identical concurrent requests share one teacher call", async () => {
    const { teacher } = service();
    fake.script({ kind: "ok", latencyMs: 100 });
    const results = await Promise.all(Array.from({ length: 20 }, () => teacher.rationales({ item: cqaItem })));
    expect(fake.requests).toHaveLength(1);
    const keys = new Set(results.map((r) => r.samples[0].key));
    expect(keys.size).toBe(1);
    expect(new Set(results.map((r) => r.samples[0].rationale)).size).toBe(1);
    expect(teacher.store.count()).toBe(1);
  });

  test("onStored writes in the transaction that stores the answer: it throws → nothing stored; the retry stores once", async () => {
    const { teacher, db, dbPath } = service();
    // a job's bookkeeping stand-in: what the item paid, written inside the hook
    db.exec("CREATE TABLE ledger (key TEXT NOT NULL, tokens INTEGER NOT NULL)");
    const other = openDatabase(dbPath); // another connection sees only what was committed
    const seen: Array<{ inTransaction: boolean; visibleHere: boolean; visibleElsewhere: boolean }> = [];
    const record = (samples: RationaleSample[], tx: Database) => {
      seen.push({
        inTransaction: tx.inTransaction,
        visibleHere: teacher.store.get(samples[0].key) !== null,
        visibleElsewhere: new RationaleStore(other).get(samples[0].key) !== null,
      });
      const { promptTokens, completionTokens } = samples[0].usage!;
      tx.query("INSERT INTO ledger (key, tokens) VALUES (?, ?)").run(samples[0].key, promptTokens + completionTokens);
    };
    const failing = teacher.rationales({ item: cqaItem }, {
      onStored: (samples, tx) => {
        record(samples, tx);
        throw new Error("job item update failed");
      },
    });
    await expect(failing).rejects.toThrow("job item update failed");
    expect(seen).toEqual([{ inTransaction: true, visibleHere: true, visibleElsewhere: false }]);
    expect(teacher.store.count()).toBe(0); // rolled back with the hook's write
    expect(db.query("SELECT count(*) AS n FROM ledger").get()).toEqual({ n: 0 });

    const retried = await teacher.rationales({ item: cqaItem }, { onStored: record });
    expect(fake.requests).toHaveLength(2); // the lost answer is asked again, once
    expect(retried.samples[0].fromStore).toBe(false);
    expect(teacher.store.count()).toBe(1);
    const stored = teacher.store.get(retried.samples[0].key)!;
    expect(keyOfRecord(stored)).toBe(stored.key); // the key the service stored under is the one its fields give
    expect(db.query("SELECT key, tokens FROM ledger").all()).toEqual([
      { key: stored.key, tokens: stored.promptTokens! + stored.completionTokens! },
    ]);

    // a store hit still reports to its hook (in a transaction too), as paid by nobody
    const hit: Array<{ inTransaction: boolean; fromStore: boolean[] }> = [];
    const onStored = (samples: RationaleSample[], tx: Database) =>
      void hit.push({ inTransaction: tx.inTransaction, fromStore: samples.map((s) => s.fromStore) });
    await teacher.rationales({ item: cqaItem }, { onStored });
    expect(hit).toEqual([{ inTransaction: true, fromStore: [true] }]);
    other.close();
  });

  test("single flight: a waiter's hook runs after the first caller's commit, on samples it did not pay for", async () => {
    const { teacher, dbPath } = service();
    const other = new RationaleStore(openDatabase(dbPath));
    fake.script({ kind: "ok", latencyMs: 100 });
    const calls: Array<{ who: string; fromStore: boolean[]; committed: boolean }> = [];
    const hook = (who: string) => (samples: RationaleSample[]) =>
      void calls.push({ who, fromStore: samples.map((s) => s.fromStore), committed: other.get(samples[0].key) !== null });
    const [first, second] = await Promise.all([
      teacher.rationales({ item: cqaItem }, { onStored: hook("first") }),
      teacher.rationales({ item: cqaItem }, { onStored: hook("second") }),
    ]);
    expect(fake.requests).toHaveLength(1);
    expect(calls).toEqual([
      { who: "first", fromStore: [false], committed: false }, // inside its own, still open, transaction
      { who: "second", fromStore: [true], committed: true }, // after that commit, in a transaction of its own
    ]);
    expect(second.samples[0].rationale).toBe(first.samples[0].rationale);
    other.db.close();
  });

  test("single flight: when the first caller's hook fails, a waiter asks the teacher itself and stores the answer once", async () => {
    const { teacher } = service();
    fake.script({ kind: "ok", latencyMs: 100 });
    const paidFor: boolean[][] = [];
    const outcomes = await Promise.allSettled([
      teacher.rationales({ item: mathItem }, { onStored: () => { throw new Error("first caller's bookkeeping failed"); } }),
      teacher.rationales({ item: mathItem }, { onStored: (samples) => void paidFor.push(samples.map((s) => !s.fromStore)) }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "fulfilled"]);
    expect(fake.requests).toHaveLength(2);
    expect(paidFor).toEqual([[true]]);
    expect(teacher.store.count()).toBe(1);
  });

  test("single flight with n: a request overlapping another's call waits for it, then asks for the rest only", async () => {
    const { teacher } = service();
    fake.script({ kind: "ok", latencyMs: 100 });
    const paid: Record<string, boolean[]> = {};
    const hook = (who: string) => (samples: RationaleSample[]) => void (paid[who] = samples.map((s) => !s.fromStore));
    const params = { n: 2, temperature: 0.7 };
    const [two, three] = await Promise.all([
      teacher.rationales({ item: mathItem, params }, { onStored: hook("two") }),
      teacher.rationales({ item: mathItem, params: { ...params, n: 3 } }, { onStored: hook("three") }),
    ]);
    expect(fake.requests.map((r) => r.body.n)).toEqual([2, 1]);
    expect(paid).toEqual({ two: [true, true], three: [false, false, true] }); // each sample paid for by one request
    expect(three.samples.slice(0, 2).map((s) => s.key)).toEqual(two.samples.map((s) => s.key));
    expect(teacher.store.count()).toBe(3);
  });

  test("onAnswered comes once the teacher call is back, before the answer is stored; at once for a store hit", async () => {
    const { teacher } = service();
    const events: string[] = [];
    const options = (name: string) => ({
      onAnswered: () => void events.push(`${name}: answered, stored=${teacher.store.count()}`),
      onStored: () => void events.push(`${name}: stored`),
    });
    await teacher.rationales({ item: cqaItem }, options("asked"));
    await teacher.rationales({ item: cqaItem }, options("hit"));
    expect(events).toEqual(["asked: answered, stored=0", "asked: stored", "hit: answered, stored=1", "hit: stored"]);
  });

  test("n samples: one call with n for the missing indices only", async () => {
    const { teacher } = service();
    const three = await teacher.rationales({ item: mathItem, params: { n: 3, temperature: 0.7 } });
    expect(three.samples.map((s) => s.sampleIndex)).toEqual([0, 1, 2]);
    expect(new Set(three.samples.map((s) => s.key)).size).toBe(3);
    expect(fake.requests.map((r) => r.body.n)).toEqual([3]);
    const five = await teacher.rationales({ item: mathItem, params: { n: 5, temperature: 0.7 } });
    expect(fake.requests.map((r) => r.body.n)).toEqual([3, 2]);
    expect(five.samples.map((s) => s.fromStore)).toEqual([true, true, true, false, false]);
    expect(five.samples.slice(0, 3)).toEqual(three.samples.map((s) => ({ ...s, fromStore: true })));
    // the call's tokens are split between its samples and add up exactly
    const call = fake.requests[1];
    const promptShares = five.samples.slice(3).reduce((sum, s) => sum + s.usage!.promptTokens, 0);
    expect(promptShares).toBe(call.body.messages[0].content.split(/\s+/).filter(Boolean).length);
    expect(teacher.store.count()).toBe(5);
  });

  test("agreement with the gold answer (math: the fake answers the sum of the numbers, 42)", async () => {
    const { teacher } = service();
    const right = await teacher.rationales({ item: mathItem });
    expect(right.samples[0]).toMatchObject({ label: "42", agrees: true });
    const wrong = await teacher.rationales({ item: { ...mathItem, answer: "41" } });
    expect(wrong.samples[0].agrees).toBe(false);
    expect(wrong.samples[0].fromStore).toBe(true); // same question, same key: gold is not part of identity
    const { teacher: fresh } = service();
    const noGold = await fresh.rationales({ item: { question: mathItem.question } });
    expect(noGold.samples[0].agrees).toBeNull();
  });

  test("a free question is identified by its normalised text", async () => {
    const { teacher } = service();
    await teacher.rationales({ item: { question: "Dan has 12 marbles and finds 30 more. How many?" } });
    const again = await teacher.rationales({ item: { question: "  Dan has 12 marbles and\nfinds 30 more.  How many? " } });
    expect(again.samples[0].fromStore).toBe(true);
    expect(fake.requests).toHaveLength(1);
  });

  for (const [behaviour, kind] of [
    [{ kind: "truncated" }, "truncated"],
    [{ kind: "content_filter" }, "content_filter"],
  ] as Array<[Behaviour, string]>) {
    test(`finish_reason ${behaviour.kind} → failure recorded, nothing stored, asked again next time`, async () => {
      const { teacher } = service();
      fake.script(behaviour);
      let error: unknown;
      await teacher.rationales({ item: cqaItem }).catch((err) => (error = err));
      expect(error).toBeInstanceOf(TeacherError);
      expect(error).toMatchObject({ kind, status: 502 });
      expect(teacher.store.count()).toBe(0);
      const [failure] = teacher.store.failures();
      expect(failure).toMatchObject({ kind, dataset: "cqa", itemId: cqaItem.id, attempts: 1 });
      const retried = await teacher.rationales({ item: cqaItem });
      expect(retried.samples[0].fromStore).toBe(false);
      expect(failure.key).toBe(retried.samples[0].key);
      expect(fake.requests).toHaveLength(2);
    });
  }

  test("rate limits that outlast the retries → TeacherError 503, recorded once per sample; followers share it", async () => {
    const { teacher } = service();
    fake.script(...Array.from({ length: 3 }, () => ({ kind: "rate_limit" as const, retryAfterMs: "5" })));
    const outcomes = await Promise.allSettled([teacher.rationales({ item: cqaItem }), teacher.rationales({ item: cqaItem })]);
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect((outcomes[0] as PromiseRejectedResult).reason).toMatchObject({ kind: "rate_limited", status: 503, attempts: 3 });
    expect(fake.requests).toHaveLength(3);
    expect(teacher.store.failures().map((f) => f.kind)).toEqual(["rate_limited"]);
    expect(teacher.store.count()).toBe(0);
  });

  test("a user's own exemplar file is used and is a different cache key", async () => {
    const { teacher, db } = service();
    const shipped = await teacher.rationales({ item: mathItem });
    const file = join(dir, "my-math.json");
    writeFileSync(file, JSON.stringify({ name: "my-math", revision: 3, format: "math", exemplars: [{ question: "1 + 1?", rationale: "One and one make 2.", answer: "2" }] }));
    const mine = new TeacherService({ db, client: teacher.client, templates: { math: loadTemplate(file) } });
    const custom = await mine.rationales({ item: mathItem, params: { maxTokens: 128 } });
    expect(custom.samples[0].template).toMatch(/^my-math@3\+/);
    expect(custom.samples[0].key).not.toBe(shipped.samples[0].key);
    expect(fake.requests.at(-1)!.body.messages[0].content).toStartWith("Q: 1 + 1?\nA: One and one make 2. So the answer is 2.\n\nQ: Dan");
  });

  test("plan() gives the keys the answers are stored under (the Batch-API path relies on it)", async () => {
    const { teacher } = service();
    const plan = teacher.plan({ item: cqaItem, params: { n: 2, temperature: 0.5 } });
    const result = await teacher.rationales({ item: cqaItem, params: { n: 2, temperature: 0.5 } });
    expect(result.samples.map((s) => s.key)).toEqual(plan.keys);
    expect(plan.request).toMatchObject({ model: "gpt-4o-mini", temperature: 0.5, maxTokens: 128, n: 2 });
  });

  test("the API key never reaches the database, errors or logs", async () => {
    const captured: string[] = [];
    const originals = { log: console.log, warn: console.warn, error: console.error, info: console.info, debug: console.debug };
    for (const name of Object.keys(originals) as Array<keyof typeof originals>) {
      console[name] = (...args: unknown[]) => void captured.push(args.map((a) => (typeof a === "string" ? a : Bun.inspect(a))).join(" "));
    }
    const errors: string[] = [];
    process.env.OPENAI_LOG = "debug"; // the SDK's own request logging, at its most talkative
    try {
      const { teacher, dbPath, db } = service({ onEvent: (e) => captured.push(JSON.stringify(e)) });
      await teacher.rationales({ item: cqaItem });
      fake.script({ kind: "error", status: 500 }, { kind: "truncated" });
      await teacher.rationales({ item: mathItem }).catch((err) => errors.push(Bun.inspect(err), String(err.stack)));
      // a rejected key: the (fake) API echoes it back partly masked, as the real one does
      const { teacher: wrongKey } = service({ apiKey: "sk-test-WRONGKEY-9f8e7d6c5b4a" }, dbPath);
      await wrongKey.rationales({ item: { question: "Is this key wrong?" } }).catch((err) => errors.push(Bun.inspect(err), String(err.stack)));
      expect(errors.length).toBe(4);
      expect(errors.join("\n")).toContain("Incorrect API key provided");
      const bytes = readFileSync(dbPath, "latin1") + readFileSync(`${dbPath}-wal`, "latin1");
      db.close();
      expect(bytes).toContain("Is this key wrong?"); // the failures really are in the bytes we search
      for (const secret of [API_KEY, API_KEY.slice(-8), "WRONGKEY", "5b4a"]) {
        expect(bytes).not.toContain(secret);
        expect(errors.join("\n")).not.toContain(secret);
        expect(captured.join("\n")).not.toContain(secret);
      }
      expect(captured.length).toBeGreaterThan(0);
    } finally {
      delete process.env.OPENAI_LOG;
      Object.assign(console, originals);
    }
  });
});
