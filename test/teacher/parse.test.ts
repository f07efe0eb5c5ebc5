import { describe, expect, test } from "bun:test";
import { agreesWithGold, answerFormatOf, normaliseGold, parseCompletion } from "../../src/teacher/parse.ts";

const choices = [
  { label: "A", text: "shirt pocket" },
  { label: "B", text: "blotter" },
  { label: "C", text: "inkwell" },
];

describe("parseCompletion", () => {
  test("multiple choice: rationale before the answer phrase, (b) → B", () => {
    const parsed = parseCompletion(" Blotters absorb ink. So the answer is (b).", "multiple-choice", choices);
    expect(parsed).toEqual({ rationale: "Blotters absorb ink.", label: "B", reasoning: null, failure: null });
  });

  test("cuts at the next invented few-shot question", () => {
    const raw = "Ink needs absorbing. So the answer is (c).\n\nQ: What is next?\nAnswer Choices: (a) x\nA: So the answer is (a).";
    expect(parseCompletion(raw, "multiple-choice", choices)).toMatchObject({ rationale: "Ink needs absorbing.", label: "C" });
  });

  test("an answer given as the choice text maps back to its label", () => {
    expect(parseCompletion("It soaks ink. So the answer is Blotter.", "multiple-choice", choices).label).toBe("B");
  });

  test("two different choices named → a failure, not a guess", () => {
    const parsed = parseCompletion("Hard. So the answer is either (a) or (c).", "multiple-choice", choices);
    expect(parsed.label).toBeNull();
    expect(parsed.failure).toEqual({ reason: "ambiguous", detail: 'the answer names "A" and "C"' });
  });

  test("no answer phrase: a no_answer failure that keeps the text for inspection", () => {
    expect(parseCompletion("Once upon a time there was a cat.\n\nQ: more", "math")).toEqual({
      rationale: "Once upon a time there was a cat.",
      reasoning: null,
      label: null,
      failure: { reason: "no_answer", detail: "no readable final answer" },
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
    expect(normaliseGold("True", "yes-no")).toBe("yes");
    expect(normaliseGold("The Eiffel Tower!", "short-answer")).toBe("eiffel tower");
  });

  test("short answers agree under SQuAD-style normalisation; yes/no under true/false", () => {
    expect(agreesWithGold("the Eiffel tower", "Eiffel Tower.", "short-answer")).toBe(true);
    expect(agreesWithGold("Eiffel", "Eiffel Tower", "short-answer")).toBe(false);
    expect(agreesWithGold("yes", "true", "yes-no")).toBe(true);
    expect(agreesWithGold("no", "yes", "yes-no")).toBe(false);
  });

  test("an item's answer format: choices, else the gold answer's shape, else free-form (short answer)", () => {
    expect(answerFormatOf({ choices: choices, answer: "B" })).toBe("multiple-choice");
    expect(answerFormatOf({ answer: "42" })).toBe("math");
    expect(answerFormatOf({ answer: "1,250.5" })).toBe("math");
    expect(answerFormatOf({ answer: "False" })).toBe("yes-no");
    expect(answerFormatOf({ answer: "Ottawa" })).toBe("short-answer");
    expect(answerFormatOf({ answer: "1945 treaty" })).toBe("short-answer");
    expect(answerFormatOf({})).toBe("short-answer"); // nothing to go by: asked free-form, never as math
    expect(answerFormatOf({ answer: "42", format: "short-answer" })).toBe("short-answer");
    // the dataset's kind goes first: a "text" dataset's "1989" is a short answer, a "number" one's "7" is math
    expect(answerFormatOf({ answer: "1989" }, "text")).toBe("short-answer");
    expect(answerFormatOf({ answer: "yes" }, "text")).toBe("yes-no");
    expect(answerFormatOf({}, "text")).toBe("short-answer");
    expect(answerFormatOf({}, "number")).toBe("math");
  });
});
