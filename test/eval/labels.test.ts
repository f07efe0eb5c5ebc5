import { describe, expect, test } from "bun:test";
import { DEFAULT_TEMPLATE } from "../../src/distill/placement.ts";
import { firstLabel, labelWritten, parseOutput, sameLabel } from "../../src/eval/labels.ts";

describe("reading labels from generated text", () => {
  test("the first parenthesised label, only once it is closed", () => {
    expect(firstLabel(" (B) because birds fly (C)")).toBe("B");
    expect(firstLabel(" ( 42 )")).toBe("42");
    expect(firstLabel(" (B")).toBeNull();
    expect(firstLabel(" () nothing")).toBeNull();
  });

  test("placement before: the rationale is what precedes the answer phrase, the label what follows it", () => {
    const text = " birds can fly (a) and swim. So the answer is (C).";
    expect(parseOutput(text, "before", DEFAULT_TEMPLATE)).toEqual({ label: "C", rationale: "birds can fly (a) and swim." });
    expect(parseOutput(" birds can fly (a)", "before", DEFAULT_TEMPLATE)).toEqual({ label: null, rationale: "birds can fly (a)" });
  });

  test("generation stops once the label's parenthesis closes, even around nothing", () => {
    expect(labelWritten(" birds can fly (a)", "before", DEFAULT_TEMPLATE)).toBe(false);
    expect(labelWritten(" birds (a) So the answer is (", "before", DEFAULT_TEMPLATE)).toBe(false);
    expect(labelWritten(" birds So the answer is (B)", "before", DEFAULT_TEMPLATE)).toBe(true);
    expect(labelWritten(" (a", "after", DEFAULT_TEMPLATE)).toBe(false);
    expect(labelWritten(" ()", "none", DEFAULT_TEMPLATE)).toBe(true);
    expect(parseOutput(" ()", "none", DEFAULT_TEMPLATE).label).toBeNull();
  });

  test("labels compare case-insensitively and numbers by value", () => {
    expect(sameLabel("c", "C")).toBe(true);
    expect(sameLabel("42.0", "42")).toBe(true);
    expect(sameLabel("1,000", "1000")).toBe(true);
    expect(sameLabel("41", "42")).toBe(false);
    expect(sameLabel(null, "A")).toBe(false);
    expect(sameLabel("", "0")).toBe(false);
  });
});
