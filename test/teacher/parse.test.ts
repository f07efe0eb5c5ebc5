import { describe, expect, test } from "bun:test";
import { agreesWithGold, normaliseGold, parseCompletion } from "../../src/teacher/parse.ts";

const choices = [
  { label: "A", text: "shirt pocket" },
  { label: "B", text: "blotter" },
  { label: "C", text: "inkwell" },
];

describe("parseCompletion", () => {
  test("multiple choice: rationale before the answer phrase, (b) → B", () => {
    const parsed = parseCompletion(" Blotters absorb ink. So the answer is (b).", "multiple-choice", choices);
    expect(parsed).toEqual({ rationale: "Blotters absorb ink.", label: "B" });
  });

  test("cuts at the next invented few-shot question", () => {
    const raw = "Ink needs absorbing. So the answer is (c).\n\nQ: What is next?\nAnswer Choices: (a) x\nA: So the answer is (a).";
    expect(parseCompletion(raw, "multiple-choice", choices)).toEqual({ rationale: "Ink needs absorbing.", label: "C" });
  });

  test("an answer given as the choice text maps back to its label", () => {
    expect(parseCompletion("It soaks ink. So the answer is Blotter.", "multiple-choice", choices).label).toBe("B");
  });

  test("two different choices named → no single label", () => {
    expect(parseCompletion("Hard. So the answer is either (a) or (c).", "multiple-choice", choices).label).toBeNull();
  });

  test("no answer phrase: the whole text is the rationale, label null", () => {
    expect(parseCompletion("Once upon a time there was a cat.\n\nQ: more", "math")).toEqual({
      rationale: "Once upon a time there was a cat.",
      label: null,
    });
  });

  test("math: numbers are canonical (commas, dollars, trailing .0, arithmetic)", () => {
    expect(parseCompletion("5 * 3 = 15. So the answer is 15.", "math").label).toBe("15");
    expect(parseCompletion("Total. So the answer is 1,250.0 dollars.", "math").label).toBe("1250");
    expect(parseCompletion("She has 8 left. So the answer is $8.", "math").label).toBe("8");
    expect(parseCompletion("Split it. The answer is (84 / 2).", "math").label).toBe("42");
  });
});

describe("agreement with the gold answer", () => {
  test("null without gold, true/false with it", () => {
    expect(agreesWithGold("B", undefined, "multiple-choice")).toBeNull();
    expect(agreesWithGold("B", "B", "multiple-choice")).toBe(true);
    expect(agreesWithGold("B", "(b)", "multiple-choice")).toBe(true);
    expect(agreesWithGold("A", "B", "multiple-choice")).toBe(false);
    expect(agreesWithGold(null, "B", "multiple-choice")).toBe(false);
    expect(agreesWithGold("42", "42.0", "math")).toBe(true);
    expect(agreesWithGold("41", "42", "math")).toBe(false);
  });

  test("gold answers normalise like labels", () => {
    expect(normaliseGold("(e)", "multiple-choice")).toBe("E");
    expect(normaliseGold("3,000", "math")).toBe("3000");
  });
});
