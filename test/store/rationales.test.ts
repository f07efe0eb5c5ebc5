import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openDatabase } from "../../src/store/db.ts";
import { RationaleStore, keyOfRecord, rationaleKey, type NewRationale } from "../../src/store/rationales.ts";

const dir = mkdtempSync(join(tmpdir(), "cot-rationales-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const freshStore = (name: string) => new RationaleStore(openDatabase(join(dir, `${name}.sqlite`)));

function rationale(i: number, overrides: Partial<NewRationale> = {}): NewRationale {
  return {
    dataset: "cqa",
    split: "train",
    itemId: `q${i}`,
    question: `Question number ${i}?`,
    choices: [
      { label: "A", text: "yes" },
      { label: "B", text: "no" },
    ],
    answer: "A",
    sampleIndex: 0,
    model: "gpt-4o-mini",
    template: "cqa-cot@1+abcdef12",
    params: { temperature: 0, maxTokens: 128 },
    rationale: `Because ${i}.`,
    reasoning: `Thinking about ${i}.`,
    label: i % 2 ? "B" : "A",
    agrees: i % 2 === 0,
    rawCompletion: `Because ${i}. So the answer is (${i % 2 ? "b" : "a"}).`,
    promptTokens: 100 + i,
    completionTokens: 10,
    reasoningTokens: 4,
    latencyMs: 12.5,
    costUsd: 0.0001,
    source: "teacher",
    ...overrides,
  };
}

describe("rationale keys", () => {
  const base = { item: { question: "Where?", dataset: "cqa", id: "q1" }, model: "m", template: "t@1", params: { temperature: 0, maxTokens: 10 }, sampleIndex: 0 };

  test("each part of the identity changes the key; param order and dataset-item text do not", () => {
    const key = rationaleKey(base);
    expect(key).toMatch(/^[0-9a-f]{64}$/);
    for (const changed of [
      { ...base, model: "m2" },
      { ...base, template: "t@2" },
      { ...base, params: { temperature: 0.7, maxTokens: 10 } },
      { ...base, sampleIndex: 1 },
      { ...base, item: { ...base.item, id: "q2" } },
    ]) {
      expect(rationaleKey(changed)).not.toBe(key);
    }
    expect(rationaleKey({ ...base, params: { maxTokens: 10, temperature: 0 } })).toBe(key);
    expect(rationaleKey({ ...base, item: { ...base.item, question: "Reworded?" } })).toBe(key);
  });

  test("free questions are identified by normalised text and choices", () => {
    const free = { ...base, item: { question: "Where  is\nit?", choices: [{ label: "a", text: " home " }] } };
    const same = { ...base, item: { question: " Where is it? ", choices: [{ label: "A", text: "home" }] } };
    expect(rationaleKey(free)).toBe(rationaleKey(same));
    expect(rationaleKey({ ...base, item: { question: "Where is it?", choices: [{ label: "A", text: "work" }] } })).not.toBe(
      rationaleKey(same),
    );
  });
});

describe("RationaleStore", () => {
  test("put/get round-trips every field, and putting the same key twice keeps the first", () => {
    const store = freshStore("roundtrip");
    const r = rationale(1);
    const { key, inserted } = store.put(r);
    expect(inserted).toBe(true);
    expect(key).toBe(keyOfRecord(r));
    const got = store.get(key)!;
    expect({ ...got, key: undefined, createdAt: undefined }).toEqual({ ...r, answeredBy: null, key: undefined, createdAt: undefined } as never);
    expect(store.put({ ...r, rationale: "changed" }).inserted).toBe(false);
    expect(store.get(key)!.rationale).toBe("Because 1.");
    expect(store.get("0".repeat(64))).toBeNull();
  });

  test("lists by (dataset, split, model) as a stream across pages, and counts", async () => {
    const store = freshStore("list");
    const trainItems = Array.from({ length: 1234 }, (_, i) => rationale(i));
    store.putMany(trainItems);
    store.putMany([rationale(1, { split: "test", itemId: "t1" }), rationale(2, { model: "other" }), rationale(3, { dataset: "svamp" })]);
    const seen: string[] = [];
    for await (const r of store.list({ dataset: "cqa", split: "train", model: "gpt-4o-mini" })) seen.push(r.itemId!);
    expect(seen).toEqual(trainItems.map((r) => r.itemId!));
    expect(store.count({ dataset: "cqa", split: "train", model: "gpt-4o-mini" })).toBe(1234);
    expect(store.count({ dataset: "cqa" })).toBe(1236);
    expect(store.count()).toBe(1237);
    expect(store.forItem("cqa", "q2").map((r) => r.model).sort()).toEqual(["gpt-4o-mini", "other"]);
    const train = store.summary().find((s) => s.dataset === "cqa" && s.split === "train" && s.model === "gpt-4o-mini")!;
    expect(train.rationales).toBe(1234);
    expect(train.agreeing).toBe(617);
  });

  test("failures live in their own table and are never served", () => {
    const store = freshStore("failures");
    const key = keyOfRecord(rationale(5));
    store.recordFailure({
      key,
      dataset: "cqa",
      split: "train",
      itemId: "q5",
      question: "Question number 5?",
      sampleIndex: 0,
      model: "gpt-4o-mini",
      template: "cqa-cot@1+abcdef12",
      params: { temperature: 0 },
      kind: "truncated",
      upstreamStatus: null,
      message: 'finish_reason "length"',
      rawCompletion: "Because",
      attempts: 1,
    });
    expect(store.get(key)).toBeNull();
    expect(store.count()).toBe(0);
    expect(store.countFailures({ dataset: "cqa" })).toBe(1);
    expect(store.failures(key)[0]).toMatchObject({ kind: "truncated", rawCompletion: "Because", params: { temperature: 0 } });
  });

  test("JSONL export → import into another database round-trips, and re-import inserts nothing", async () => {
    const source = freshStore("export");
    source.putMany(Array.from({ length: 50 }, (_, i) => rationale(i)));
    source.put(rationale(0, { dataset: null, split: null, itemId: null, choices: null, answer: null, agrees: null, costUsd: null }));
    const path = join(dir, "export.jsonl");
    expect(await source.exportJsonl(path, {})).toBe(51);
    const lines = readFileSync(path, "utf8").trimEnd().split("\n");
    expect(lines.length).toBe(51);
    expect(JSON.parse(lines[0]).question).toBe("Question number 0?");

    const target = freshStore("import");
    const first = target.importJsonl(readFileSync(path, "utf8"));
    expect(first).toEqual({ inserted: 51, duplicates: 0, errors: [] });
    const exported = lines.map((l) => JSON.parse(l));
    for (const original of exported) {
      const copy = target.get(original.key)!;
      expect(copy).not.toBeNull();
      expect({ ...copy, source: "teacher" }).toEqual(original);
      expect(copy.source).toBe("import");
    }
    expect(target.importJsonl(readFileSync(path, "utf8"))).toEqual({ inserted: 0, duplicates: 51, errors: [] });
    expect(target.count()).toBe(51);
  });

  test("import reports bad lines by number and inserts the good ones", () => {
    const store = freshStore("bad-import");
    const good = (i: number) => JSON.stringify({ ...rationale(i), createdAt: 1 });
    const text = [
      good(1),
      "{not json",
      JSON.stringify({ ...rationale(2), createdAt: 1, sampleIndex: -1 }),
      "",
      good(3),
      JSON.stringify({ ...rationale(4), createdAt: 1, model: undefined }),
    ].join("\n");
    writeFileSync(join(dir, "bad.jsonl"), text);
    const report = store.importJsonl(text);
    expect(report.inserted).toBe(2);
    expect(report.errors.map((e) => e.line)).toEqual([2, 3, 6]);
    expect(report.errors[1].message).toContain("sampleIndex");
    expect(report.errors[2].message).toContain("model");
    expect(store.count()).toBe(2);
  });
});
