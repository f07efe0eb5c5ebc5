import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../../src/errors.ts";
import { datasetNames, defaultDevSize, getDataset, loadSplit, registerJsonl } from "../../src/data/registry.ts";

const SHIPPED = join(import.meta.dir, "../../datasets");

function jsonLinesOf(path: string): Record<string, unknown>[] {
  return readFileSync(path, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

async function userErrorOf(run: () => unknown): Promise<UserError> {
  try {
    await run();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    return err as UserError;
  }
  throw new Error("expected a UserError");
}

describe("shipped CommonsenseQA", () => {
  test("train has 9741 items and test 1221, each with choices A–E and a gold label among them", async () => {
    const train = await loadSplit("cqa", "train");
    const test = await loadSplit("cqa", "test");
    expect(train.length).toBe(9741);
    expect(test.length).toBe(1221);
    for (const item of [...train, ...test]) {
      expect(item.choices!.map((c) => c.label)).toEqual(["A", "B", "C", "D", "E"]);
      expect(["A", "B", "C", "D", "E"]).toContain(item.answer);
    }
    expect(new Set(train.map((i) => i.id)).size).toBe(9741);
  });

  test("the gold label points at the choice whose text is the raw answer", async () => {
    const raw = jsonLinesOf(join(SHIPPED, "cqa/cqa_test.json"));
    const test = await loadSplit("cqa", "test");
    for (const index of [0, 17, 600, 1220]) {
      const item = test[index];
      expect(item.id).toBe(raw[index].id as string);
      expect(item.index).toBe(index);
      expect(item.choices!.find((c) => c.label === item.answer)!.text).toBe(raw[index].answer as string);
    }
  });
});

describe("shipped SVAMP", () => {
  test("800 train and 200 test problems; the answer is the value of the row's equation", async () => {
    const train = await loadSplit("svamp", "train");
    expect(train.length).toBe(800);
    expect((await loadSplit("svamp", "test")).length).toBe(200);
    const raw = jsonLinesOf(join(SHIPPED, "svamp/svamp_train.json"));
    for (const index of [0, 1, 2, 399, 799]) {
      const equation = String(raw[index].label);
      // the equations use only numbers, + - * / and parentheses
      expect(equation).toMatch(/^[\d.\s()+\-*/]+$/);
      const value = Function(`return ${equation}`)() as number;
      expect(Number(train[index].answer)).toBeCloseTo(value, 6);
      expect(train[index].question).toBe(String(raw[index].input));
      expect(train[index].id).toMatch(/^chal-\d+$/);
    }
    expect(train[0].answer).toBe("42"); // "( 84.0 / 2.0 )": 84 points over 2 rounds
  });
});

describe("dev split", () => {
  test("is deterministic for a seed, disjoint from train-minus-dev, and together they make up train", async () => {
    const train = await loadSplit("svamp", "train");
    const dev = await loadSplit("svamp", "dev", { devSeed: 3 });
    const again = await loadSplit("svamp", "dev", { devSeed: 3 });
    const rest = await loadSplit("svamp", "train", { devSeed: 3, excludeDev: true });
    expect(dev.length).toBe(defaultDevSize(800));
    expect(dev.map((i) => i.index)).toEqual(again.map((i) => i.index));
    const devIdx = new Set(dev.map((i) => i.index));
    expect(rest.some((i) => devIdx.has(i.index))).toBe(false);
    expect(dev.length + rest.length).toBe(train.length);
    // dev rows keep their train index and content
    for (const item of dev) {
      expect(item.split).toBe("dev");
      expect(item.question).toBe(train[item.index].question);
    }
  });

  test("another seed gives another dev set; the size is configurable and checked", async () => {
    const a = (await loadSplit("cqa", "dev", { devSize: 100, devSeed: 1 })).map((i) => i.index);
    const b = (await loadSplit("cqa", "dev", { devSize: 100, devSeed: 2 })).map((i) => i.index);
    expect(a.length).toBe(100);
    expect(a).not.toEqual(b);
    expect((await userErrorOf(() => loadSplit("cqa", "dev", { devSize: 9741 }))).message).toContain("dev size");
  });
});

describe("names and errors", () => {
  test("an unknown dataset lists the known ones (404)", async () => {
    const err = await userErrorOf(() => getDataset("nope"));
    expect(err.status).toBe(404);
    expect(err.message).toContain("cqa");
    expect(err.message).toContain("svamp");
  });

  test("names that could walk out of datasets/ are refused", async () => {
    for (const name of ["../etc", "cqa/../svamp", "a/b", "", "..", ".hidden"]) {
      expect((await userErrorOf(() => getDataset(name))).status).toBe(400);
    }
  });

  test("an unknown split names the splits there are", async () => {
    expect((await userErrorOf(() => loadSplit("cqa", "validation"))).message).toContain("train, test, dev");
  });
});

describe("JSON-lines datasets", () => {
  const dir = mkdtempSync(join(tmpdir(), "cot-data-"));
  const saved = process.env.COT_DISTILL_DATASETS;
  afterEach(() => {
    if (saved === undefined) delete process.env.COT_DISTILL_DATASETS;
    else process.env.COT_DISTILL_DATASETS = saved;
  });

  test("registerJsonl maps fields, nested paths, choice texts to labels", async () => {
    const path = join(dir, "mc.jsonl");
    writeFileSync(
      path,
      [
        { meta: { q: "Sky colour?" }, opts: ["red", "blue"], gold: "blue", key: "x1" },
        { meta: { q: "Two plus two?" }, opts: { A: "4", B: "5" }, gold: "A", key: "x2" },
      ].map((r) => JSON.stringify(r)).join("\n") + "\n",
    );
    registerJsonl("my-mc", { path, fields: { question: "meta.q", choices: "opts", answer: "gold", id: "key" } });
    expect(datasetNames()).toContain("my-mc");
    const items = await loadSplit("my-mc", "train");
    expect(items.map((i) => [i.id, i.question, i.answer])).toEqual([
      ["x1", "Sky colour?", "B"],
      ["x2", "Two plus two?", "A"],
    ]);
  });

  test("a row missing a field is one error naming the file, line and field", async () => {
    const path = join(dir, "broken.jsonl");
    writeFileSync(path, `{"q":"a","a":"1"}\n\n{"q":"b"}\n`);
    registerJsonl("broken", { path, fields: { question: "q", answer: "a" } });
    const err = await userErrorOf(() => loadSplit("broken", "train"));
    expect(err.message).toBe(`${path}:3: missing field "a"`);
  });

  test("a datasets/<name>/dataset.json descriptor is found by name; its files must stay in its folder", async () => {
    const root = join(dir, "datasets");
    mkdirSync(join(root, "arith"), { recursive: true });
    mkdirSync(join(root, "escape"), { recursive: true });
    writeFileSync(join(root, "arith/train.jsonl"), `{"problem":"1+1","solution":2}\n{"problem":"2*3","solution":6}\n`);
    writeFileSync(join(root, "arith/test.jsonl"), `{"problem":"9-4","solution":5}\n`);
    const fields = { question: "problem", answer: "solution" };
    writeFileSync(join(root, "arith/dataset.json"), JSON.stringify({ splits: { train: "train.jsonl", test: "test.jsonl" }, fields }));
    writeFileSync(join(root, "escape/dataset.json"), JSON.stringify({ path: "../arith/train.jsonl", fields }));
    process.env.COT_DISTILL_DATASETS = root;
    expect(datasetNames()).toEqual(expect.arrayContaining(["arith", "escape", "cqa"]));
    const test = await loadSplit("arith", "test");
    expect(test).toEqual([{ id: "test-0", dataset: "arith", split: "test", index: 0, question: "9-4", answer: "5" }]);
    expect((await userErrorOf(() => getDataset("escape"))).message).toContain("outside");
  });
});
