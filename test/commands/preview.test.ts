import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT as ROOT, runCli } from "../helpers/cli.ts";

const cache = mkdtempSync(join(tmpdir(), "cot-preview-cache-"));

function preview(args: string[], env: Record<string, string> = {}) {
  return runCli(["preview", ...args], { COT_DISTILL_CACHE: cache, ...env });
}

const base = ["--dataset", "cqa", "--split", "train", "--index", "0"];
const json = (args: string[]) => {
  const out = preview([...args, "--json"]);
  expect(out.stderr).toBe("");
  expect(out.code).toBe(0);
  return JSON.parse(out.stdout) as { prompt: string; target: string; label: string; rationale_tokens: string[]; rationale_source: Record<string, unknown> };
};

// the first training item and its PaLM rationale, read straight from the shipped files
const rawItem = JSON.parse(readFileSync(join(ROOT, "datasets/cqa/cqa_train.json"), "utf8").split("\n")[0]);
const rawRationale = (JSON.parse(readFileSync(join(ROOT, "datasets/cqa/llm/train_CoT_0.json"), "utf8"))[0] as string).split(
  " So the answer is",
)[0];

beforeAll(() => {
  // trains and caches the dataset's compact tokenizer once, so the tests below read it
  json([...base, "--placement", "none", "--selection", "full"]);
});

describe("preview --json", () => {
  test("after/full: the prompt has the question and choices; the target is the gold label then the rationale", () => {
    const out = json([...base, "--placement", "after", "--selection", "full"]);
    expect(out.prompt).toStartWith(`Q: ${rawItem.question}\n(A) ${rawItem.choices[0]}\n`);
    expect(out.prompt).toEndWith(`(E) ${rawItem.choices[4]}\nA:`);
    expect(rawItem.choices[3]).toBe(rawItem.answer);
    expect(out.label).toBe("D");
    expect(out.target).toBe(` (D) ${rawRationale}<|endoftext|>`);
    expect(out.rationale_tokens.join("")).toBe(` ${rawRationale}`);
  });

  test("before puts the rationale first and ends with the answer phrase; none has no rationale", () => {
    expect(json([...base, "--placement", "before", "--selection", "full"]).target).toBe(` ${rawRationale} So the answer is (D).<|endoftext|>`);
    const none = json([...base, "--placement", "none", "--selection", "full"]);
    expect(none.target).toBe(" (D)<|endoftext|>");
    expect(none.rationale_tokens).toEqual([]);
  });

  test("shuffled shows the same tokens in another order; key shows k of them in order; the seed reproduces", () => {
    const full = json([...base, "--placement", "after", "--selection", "full"]).rationale_tokens;
    const shuffled = json([...base, "--placement", "after", "--selection", "shuffled", "--seed", "7"]).rationale_tokens;
    expect([...shuffled].sort()).toEqual([...full].sort());
    expect(shuffled).not.toEqual(full);
    expect(json([...base, "--placement", "after", "--selection", "shuffled", "--seed", "7"]).rationale_tokens).toEqual(shuffled);
    const key = json([...base, "--placement", "after", "--selection", "key", "--k", "4"]).rationale_tokens;
    expect(key.length).toBe(4);
    let at = 0;
    for (const token of key) at = full.indexOf(token, at) + 1;
    expect(at).toBeGreaterThan(0);
  });

  test("masked with --p shows round(p·n) mask tokens", () => {
    const full = json([...base, "--placement", "after", "--selection", "full"]).rationale_tokens;
    const masked = json([...base, "--placement", "after", "--selection", "masked", "--p", "0.5"]).rationale_tokens;
    expect(masked.filter((t) => t === "<|mask|>").length).toBe(Math.round(0.5 * full.length));
  });

  test("a model folder's tokenizer can be named", () => {
    const out = json([...base, "--placement", "after", "--selection", "full", "--tokenizer", "test/fixtures/tiny-random-gpt2"]);
    expect(out.target).toStartWith(" (D)");
    // the tiny 1000-token vocabulary splits words the compact one keeps whole
    expect(out.rationale_tokens.length).toBeGreaterThan(json([...base, "--placement", "after", "--selection", "full"]).rationale_tokens.length);
  });

  test("svamp and the dev split work the same way; PaLM's wrong answers are kept only with --rationale-filter any", () => {
    const args = ["--dataset", "svamp", "--split", "dev", "--index", "0", "--placement", "after", "--selection", "full"];
    const refused = preview([...args, "--json"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe("cot-distill: svamp/dev item 0 (chal-785) has no training rationale from palm: disagrees (gold 60; sample 0: 6); --rationale-filter any keeps it");
    const out = json([...args, "--rationale-filter", "any"]);
    expect(out.target).toMatch(/^ \(60\) /);
    expect(out.rationale_source).toMatchObject({ source: "palm", teacher: "palm-540b", sample: 0, label: "6", agrees: false });
  });
});

test("without --json the view is readable", () => {
  const out = preview([...base, "--placement", "after", "--selection", "full"]);
  expect(out.code).toBe(0);
  expect(out.stdout).toContain("target:\n (D) The answer must be");
  expect(out.stdout).toContain("label: D");
});

test("a k past the rationale's length keeps it whole (so a key-k sweep can end at the full rationale)", () => {
  const full = preview([...base, "--placement", "after", "--selection", "full", "--json"]);
  const key = preview([...base, "--placement", "after", "--selection", "key", "--k", "5000", "--json"]);
  expect([full.code, key.code]).toEqual([0, 0]);
  expect(JSON.parse(key.stdout).target).toBe(JSON.parse(full.stdout).target);
});

describe("bad input: one line on stderr, exit 1", () => {
  const cases: Array<[string, string[], string]> = [
    ["unknown placement", [...base, "--placement", "middle", "--selection", "full"], 'unknown placement "middle" (valid: none, before, after)'],
    ["unknown selection", [...base, "--placement", "after", "--selection", "top"], 'unknown selection "top" (valid: full, shuffled, random, key, masked, unk)'],
    ["p above 1", [...base, "--placement", "after", "--selection", "masked", "--p", "1.5"], "p must be in [0, 1], got 1.5"],
    ["p below 0", [...base, "--placement", "after", "--selection", "masked", "--p=-0.2"], "p must be in [0, 1], got -0.2"],
    ["index out of range", ["--dataset", "cqa", "--split", "test", "--index", "1221", "--placement", "none", "--selection", "full"], "--index 1221 is out of range: cqa/test has 1221 items"],
    ["unknown dataset", ["--dataset", "mnist", "--split", "train", "--index", "0", "--placement", "none", "--selection", "full"], 'unknown dataset "mnist" (known: cqa, hops, majority, svamp)'],
    ["missing flag", ["--dataset", "cqa", "--split", "train", "--index", "0", "--selection", "full"], "--placement is required"],
  ];
  for (const [name, args, message] of cases) {
    test(name, () => {
      const out = preview(args);
      expect(out.code).toBe(1);
      expect(out.stdout).toBe("");
      expect(out.stderr.trim().split("\n").length).toBe(1);
      expect(out.stderr).toContain(message);
    });
  }

  test("a dataset row missing a field", () => {
    const root = mkdtempSync(join(tmpdir(), "cot-preview-data-"));
    mkdirSync(join(root, "quiz"));
    writeFileSync(join(root, "quiz/train.jsonl"), `{"q":"1+1?","a":"2"}\n{"q":"2+2?"}\n`);
    writeFileSync(join(root, "quiz/dataset.json"), JSON.stringify({ path: "train.jsonl", fields: { question: "q", answer: "a" } }));
    const out = preview(["--dataset", "quiz", "--split", "train", "--index", "0", "--placement", "none", "--selection", "full"], {
      COT_DISTILL_DATASETS: root,
    });
    expect(out.code).toBe(1);
    expect(out.stderr.trim()).toBe(`cot-distill: ${join(root, "quiz/train.jsonl")}:2: missing field "a"`);
  });
});
