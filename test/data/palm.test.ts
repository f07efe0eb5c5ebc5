import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { evaluateArithmetic } from "../../src/data/arithmetic.ts";
import { palmRationales, parsePalmOutput } from "../../src/data/palm.ts";
import { loadSplit } from "../../src/data/registry.ts";

const SHIPPED = join(import.meta.dir, "../../datasets");
const rawOf = (path: string) => JSON.parse(readFileSync(join(SHIPPED, path), "utf8")) as string[];

describe("PaLM rationales for CommonsenseQA", () => {
  test("one entry per item, aligned by index across the 10 train files", async () => {
    const items = await loadSplit("cqa", "train");
    const palm = await palmRationales("cqa", "train");
    expect(palm.length).toBe(items.length);
    expect(palm.every((p, i) => p !== null && p.index === i)).toBe(true);
    // item 5432 lives in train_CoT_5.json at position 432
    const raw = rawOf("cqa/llm/train_CoT_5.json")[432];
    expect(raw.startsWith(palm[5432]!.rationale)).toBe(true);
  });

  test("the parsed label is the letter the raw text names, and that letter's choice is the text it names", async () => {
    const items = await loadSplit("cqa", "test");
    const palm = await palmRationales("cqa", "test");
    const raw = [...rawOf("cqa/llm/test_CoT_0.json"), ...rawOf("cqa/llm/test_CoT_1.json")];
    for (const index of [0, 1, 2, 500, 1000, 1220]) {
      const { label, rationale } = palm[index]!;
      const choice = items[index].choices!.find((c) => c.label === label)!;
      expect(raw[index]).toContain(`${rationale} So the answer is (${label!.toLowerCase()}) ${choice.text}`);
    }
  });

  test("the teacher's continuation into an invented next question is cut off", async () => {
    const raw = rawOf("cqa/llm/train_CoT_0.json")[0];
    expect(raw).toContain("\n\nQ:");
    const palm = (await palmRationales("cqa", "train"))[0]!;
    expect(palm.rationale).not.toContain("Q:");
    expect(palm.answerText).toBe("(d) math problem.");
  });

  test("PaLM's label agrees with gold on most items, as published (CoT PaLM on CQA: roughly 3 in 4)", async () => {
    const items = await loadSplit("cqa", "train");
    const palm = await palmRationales("cqa", "train");
    const agree = palm.filter((p, i) => p?.label === items[i].answer).length / items.length;
    expect(agree).toBeGreaterThan(0.6);
    expect(agree).toBeLessThan(0.95);
  });

  test("an answer naming two choices has no label but keeps its rationale", () => {
    const parsed = parsePalmOutput("Both fit. So the answer is either (a) ocean or (b) sea.\n\nQ: next", "choice");
    expect(parsed).toEqual({ rationale: "Both fit.", label: null, answerText: "either (a) ocean or (b) sea." });
    expect(parsePalmOutput("It rambles on without ever answering", "choice")).toBeNull();
  });

  test("dev rows map back to their train rationales", async () => {
    const dev = await loadSplit("cqa", "dev", { devSize: 50, devSeed: 9 });
    const palmDev = await palmRationales("cqa", "dev", { devSize: 50, devSeed: 9 });
    const palmTrain = await palmRationales("cqa", "train");
    expect(palmDev.length).toBe(50);
    palmDev.forEach((p, i) => {
      expect(p!.index).toBe(dev[i].index);
      expect(p).toEqual(palmTrain[dev[i].index]);
    });
  });
});

describe("PaLM rationales for SVAMP", () => {
  test("the label is the value of the expression the raw text gives as its answer", async () => {
    const palm = await palmRationales("svamp", "train");
    const raw = [...rawOf("svamp/llm/train_CoT_0.json"), ...rawOf("svamp/llm/train_CoT_1.json")];
    expect(palm.length).toBe(800);
    let checked = 0;
    for (const index of [0, 1, 2, 100, 501, 799]) {
      const entry = palm[index];
      if (!entry || entry.label === null) continue;
      const expression = /The answer is (\([^\n]*\))\./.exec(raw[index].split("\n\nQ:")[0])![1];
      expect(Number(entry.label)).toBeCloseTo(Function(`return ${expression}`)() as number, 9);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(4);
    expect(palm[0]!.label).toBe("42"); // "(84 / 2)"
  });

  test("a continuation that never answers is null", async () => {
    const palm = await palmRationales("svamp", "train");
    const raw = [...rawOf("svamp/llm/train_CoT_0.json"), ...rawOf("svamp/llm/train_CoT_1.json")];
    palm.forEach((entry, i) => expect(entry === null).toBe(!/[Tt]he answer is/.test(raw[i].split("\n\nQ:")[0])));
  });

  test("arithmetic reads the teacher's expressions and refuses what it cannot read whole", () => {
    expect(evaluateArithmetic("((17 - 7) - 8)")).toBe(2);
    expect(evaluateArithmetic("(2 + 3 * 4) / -2")).toBe(-7);
    expect(evaluateArithmetic("((491 - 21")).toBeNull();
    expect(evaluateArithmetic("3 apples")).toBeNull();
    expect(evaluateArithmetic("1 / 0")).toBeNull();
  });
});

test("a dataset without PaLM files says so", async () => {
  const { registerJsonl } = await import("../../src/data/registry.ts");
  const path = join(SHIPPED, "svamp/svamp_test.json");
  registerJsonl("plain", { path, fields: { question: "input", answer: "label" } });
  await expect(palmRationales("plain", "train")).rejects.toThrow('dataset "plain" ships no PaLM rationales');
});
