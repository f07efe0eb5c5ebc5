/** The rationale filter and sample modes as pure functions, and the file forms a source reads. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSplit } from "../../src/data/registry.ts";
import { chooseAnswers, majorityLabel, openRationaleSource, serverTeacherName, type TeacherAnswer } from "../../src/distill/rationales.ts";
import { openDatabase } from "../../src/store/db.ts";
import { RationaleStore } from "../../src/store/rationales.ts";

const dir = mkdtempSync(join(tmpdir(), "rationale-source-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const answer = (sampleIndex: number, label: string | null, agrees: boolean | null, rationale = `because ${sampleIndex}`): TeacherAnswer => ({
  rationale,
  label,
  agrees,
  sampleIndex,
  teacher: "t",
  template: "v",
  key: null,
});

describe("chooseAnswers", () => {
  const mixed = [answer(0, "B", false), answer(1, "A", true), answer(2, "A", true)];
  test("first: the first sample, dropped when it disagrees (agree) or kept (any)", () => {
    expect(chooseAnswers(mixed, "agree", "first")).toEqual({ dropped: "disagrees" });
    expect(chooseAnswers(mixed, "any", "first")).toEqual({ answers: [mixed[0]] });
  });
  test("all: every sample the filter keeps, each its own example", () => {
    expect(chooseAnswers(mixed, "agree", "all")).toEqual({ answers: [mixed[1], mixed[2]] });
    expect(chooseAnswers(mixed, "any", "all")).toEqual({ answers: mixed });
    expect(chooseAnswers([answer(0, "B", false)], "agree", "all")).toEqual({ dropped: "disagrees" });
  });
  test("majority: the vote's label, then its first sample; a wrong winner is dropped under agree", () => {
    expect(chooseAnswers(mixed, "agree", "majority")).toEqual({ answers: [mixed[1]] });
    const wrongWins = [answer(0, "A", true), answer(1, "C", false), answer(2, "C", false)];
    expect(chooseAnswers(wrongWins, "agree", "majority")).toEqual({ dropped: "majority_disagrees" });
    expect(chooseAnswers(wrongWins, "any", "majority")).toEqual({ answers: [wrongWins[1]] });
    expect(majorityLabel([answer(0, "B", false), answer(1, "A", true)])).toBe("B"); // a tie goes to the first voted
    expect(majorityLabel([answer(0, null, false)])).toBeNull();
  });
  test("no answer, an empty rationale, and unknown agreement", () => {
    expect(chooseAnswers([], "any", "first")).toEqual({ dropped: "no_answer" });
    expect(chooseAnswers([answer(0, "A", true, "  ")], "any", "first")).toEqual({ dropped: "empty_rationale" });
    // a file without labels cannot be checked: agree keeps it (the run counts it as unchecked)
    expect(chooseAnswers([answer(0, null, null)], "agree", "first")).toEqual({ answers: [answer(0, null, null)] });
  });
});

describe("what a name is on the server", () => {
  test("model names are teachers; .jsonl names and anything path-like are files to resolve in the data root", () => {
    expect(["gpt-4o-mini", "meta-llama/Llama-3.1-8B-Instruct", "qwen2.5:7b", "teacher:my/model"].map(serverTeacherName)).toEqual(["gpt-4o-mini", "meta-llama/Llama-3.1-8B-Instruct", "qwen2.5:7b", "my/model"]);
    expect(["mine.jsonl", "export.json", "/etc/passwd", "../x", "a/../../b", "~/x", "a b"].map(serverTeacherName)).toEqual([null, null, null, null, null, null, null]);
  });
});

describe("file sources", () => {
  test("the simple form by id or index, with an optional label checked against gold", async () => {
    const items = (await loadSplit("cqa", "train")).slice(0, 3);
    const file = join(dir, "simple.jsonl");
    writeFileSync(file, [
      JSON.stringify({ id: items[0].id, rationale: "by id", label: items[0].answer }),
      JSON.stringify({ index: 1, rationale: "by index" }),
      JSON.stringify({ index: 1, rationale: "second sample", label: "Z" }),
    ].join("\n"));
    const source = await openRationaleSource(file, { dataset: "cqa", split: "train" });
    const answers = await source.answers(items);
    expect(answers[0]).toMatchObject([{ rationale: "by id", agrees: true, sampleIndex: 0 }]);
    expect(answers[1]).toMatchObject([{ rationale: "by index", agrees: null, sampleIndex: 0 }, { rationale: "second sample", agrees: false, sampleIndex: 1 }]);
    expect(answers[2]).toEqual([]);
  });

  test("a broken export line names its line and field; a file for another dataset says which it holds", async () => {
    const bad = join(dir, "bad.jsonl");
    writeFileSync(bad, `${JSON.stringify({ itemId: "x", dataset: "cqa", rationale: "r" })}\n`);
    await expect(openRationaleSource(bad, { dataset: "cqa", split: "train" })).rejects.toThrow(/bad\.jsonl:1: split: .* \(expected a line of GET \/v1\/rationales/);
    const other = join(dir, "other.jsonl");
    const record = { key: "k", dataset: "svamp", split: "train", itemId: "x", question: "q", choices: null, answer: "1", sampleIndex: 0, model: "m", template: "t", params: {}, rationale: "r", label: "1", agrees: true, rawCompletion: "r", promptTokens: null, completionTokens: null, latencyMs: null, costUsd: null, source: "teacher", createdAt: 1 };
    writeFileSync(other, `${JSON.stringify(record)}\n`);
    await expect(openRationaleSource(other, { dataset: "cqa", split: "train" })).rejects.toThrow(/no rationales for dataset cqa \(the file holds svamp\)/);
    await expect(openRationaleSource(join(dir, "absent.jsonl"), { dataset: "cqa", split: "train" })).rejects.toThrow(/no such file/);
  });

  test("a teacher in the store: newest template by default, --rationale-part picks explanation, reasoning or both", async () => {
    const items = (await loadSplit("cqa", "train")).slice(0, 2);
    const path = join(dir, "store.sqlite");
    const db = openDatabase(path);
    const store = new RationaleStore(db);
    const record = (item: (typeof items)[number], template: string, createdAt: number, reasoning: string | null) => ({
      dataset: "cqa", split: "train", itemId: item.id, question: item.question, choices: item.choices ?? null, answer: item.answer,
      sampleIndex: 0, model: "teacher-x", answeredBy: "teacher-x-0613", template, params: {}, rationale: `explained ${template}`, reasoning,
      label: item.answer, agrees: true, rawCompletion: "r", promptTokens: null, completionTokens: null, latencyMs: null, costUsd: null,
      source: "teacher" as const, createdAt,
    });
    store.putMany([record(items[0], "old@1", 1, null), record(items[0], "new@1", 2, "thought"), record(items[1], "new@1", 3, null)]);
    db.close();
    const open = (part?: "explanation" | "reasoning" | "both", template?: string) => openRationaleSource("teacher-x", { dataset: "cqa", split: "train", db: path, part, template });
    const newest = await open();
    expect(newest).toMatchObject({ kind: "store", teacher: "teacher-x", template: "new@1" });
    expect((await newest.answers(items)).map((a) => a[0]?.rationale)).toEqual(["explained new@1", "explained new@1"]);
    expect((await (await open(undefined, "old@1")).answers(items)).map((a) => a.length)).toEqual([1, 0]);
    const reasoning = await (await open("reasoning")).answers(items);
    expect(reasoning.map((a) => a[0].rationale)).toEqual(["thought", ""]);
    expect(chooseAnswers(reasoning[1], "agree", "first")).toEqual({ dropped: "empty_rationale" });
    expect((await (await open("both")).answers(items))[0][0].rationale).toBe("thought\n\nexplained new@1");
    // by the model that answered, too; an unknown one lists what the store has
    expect((await openRationaleSource("teacher-x-0613", { dataset: "cqa", split: "train", db: path })).template).toBe("new@1");
    await expect(openRationaleSource("teacher-y", { dataset: "cqa", split: "train", db: path })).rejects.toThrow(/teachers it has: teacher-x \(3\)/);
    await expect(open(undefined, "nope@1")).rejects.toThrow(/templates: new@1 \(2\), old@1 \(1\)/);
  });

  test("a teacher name without a database is an error that creates no database", async () => {
    const db = join(dir, "none.sqlite");
    await expect(openRationaleSource("gpt-x", { dataset: "cqa", split: "train", db })).rejects.toThrow(/no rationale store at .*none\.sqlite/);
    expect(await Bun.file(db).exists()).toBe(false);
  });
});

test("gold is a source kind: a generated dataset's own rationales, agreeing with gold; a dataset without them is refused", async () => {
  const items = (await loadSplit("hops-1x2", "train", { excludeDev: true })).slice(0, 4);
  const source = await openRationaleSource("gold", { dataset: "hops-1x2", split: "train", splitOptions: { excludeDev: true } });
  expect({ kind: source.kind, name: source.name }).toEqual({ kind: "gold", name: "gold" });
  const answers = await source.answers(items);
  expect(answers.map((a) => a.map((x) => [x.rationale, x.label, x.agrees]))).toEqual(items.map((i) => [[i.rationale!, i.answer, true]]));
  const cqa = (await loadSplit("cqa", "train")).slice(0, 2);
  const none = await openRationaleSource("gold", { dataset: "cqa", split: "train" });
  await expect(none.answers(cqa)).rejects.toThrow(/dataset "cqa" ships no gold rationales/);
});
