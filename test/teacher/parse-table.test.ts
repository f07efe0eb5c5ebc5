/**
 * The answers real teachers write, table-driven: each completion with the label and rationale it must give (or the
 * failure reason it must be refused with). The first table is issue 12's own; the second spans the common formats
 * of instruct, chat and reasoning models for multiple choice, math, yes/no and short answers.
 */
import { describe, expect, test } from "bun:test";
import { parseCompletion, type ParseFailureReason } from "../../src/teacher/parse.ts";
import type { AnswerFormat } from "../../src/teacher/prompts.ts";

const gull = [
  { label: "A", text: "desert" },
  { label: "B", text: "sea" },
  { label: "C", text: "mine" },
];

const ink = [
  { label: "A", text: "shirt pocket" },
  { label: "B", text: "calligrapher's hand" },
  { label: "C", text: "inkwell" },
  { label: "D", text: "desk drawer" },
  { label: "E", text: "blotter" },
];

interface Case {
  text: string;
  format?: AnswerFormat;
  choices?: typeof gull;
  label?: string;
  rationale?: string;
  reasoning?: string | null;
  fails?: ParseFailureReason;
  /** reasoning_content sent beside the text */
  reasoningContent?: string;
}

function check(c: Case) {
  const parsed = parseCompletion(c.text, c.format ?? "multiple-choice", c.choices ?? (c.format && c.format !== "multiple-choice" ? [] : gull), {
    reasoning: c.reasoningContent,
  });
  if (c.fails) {
    expect(parsed.failure?.reason).toBe(c.fails);
    expect(parsed.label).toBeNull();
    return;
  }
  expect(parsed.failure).toBeNull();
  expect(parsed.label).toBe(c.label!);
  expect(parsed.rationale).toBe(c.rationale!);
  if (c.reasoning !== undefined) expect(parsed.reasoning).toBe(c.reasoning);
}

const issueTable: Case[] = [
  { text: "Gulls live near water. So the answer is B.", label: "B", rationale: "Gulls live near water." },
  { text: "Gulls live near water.\n\nAnswer: B", label: "B", rationale: "Gulls live near water." },
  { text: "**Reasoning:** Gulls are seabirds.\n**Answer:** (B) sea", label: "B", rationale: "Gulls are seabirds." },
  { text: "Gulls are seabirds, so the correct choice is B) sea.", label: "B", rationale: "Gulls are seabirds." },
  { text: "The answer is (b) because gulls live near the sea.", label: "B", rationale: "Gulls live near the sea." },
  { text: "Gulls live near water. Therefore, the answer is sea.", label: "B", rationale: "Gulls live near water." },
  { text: "<think>gulls... sea</think>\nSo the answer is (b).", label: "B", rationale: "", reasoning: "gulls... sea" },
  { text: "Gulls live near water. So the answer is (b).", label: "B", rationale: "Gulls live near water." },
];

const cases: Array<[string, Case]> = [
  // multiple choice, answer last
  ["PaLM phrasing", { text: " Blotters absorb ink. So the answer is (e).", choices: ink, label: "E", rationale: "Blotters absorb ink." }],
  ["PaLM, invents the next question", { text: "Ink needs absorbing. So the answer is (c).\n\nQ: What is next?\nAnswer Choices: (a) x\nA: So the answer is (a).", choices: ink, label: "C", rationale: "Ink needs absorbing." }],
  ["choice text, capitalised", { text: "It soaks up ink. So the answer is Blotter.", choices: ink, label: "E", rationale: "It soaks up ink." }],
  ["choice text of two words", { text: "People keep pens there. The answer is desk drawer.", choices: ink, label: "D", rationale: "People keep pens there." }],
  ["Final answer line", { text: "Gulls feed on fish.\nFinal answer: B", label: "B", rationale: "Gulls feed on fish." }],
  ["Final Answer markdown heading", { text: "Gulls feed on fish, which live in the sea.\n\n### Final Answer\n**B**", label: "B", rationale: "Gulls feed on fish, which live in the sea." }],
  ["bold answer label with colon inside", { text: "Gulls are coastal birds.\n\n**Answer: B) sea**", label: "B", rationale: "Gulls are coastal birds." }],
  ["bulleted reasoning", { text: "- Gulls are seabirds.\n- Seabirds live by the sea.\n\nSo the answer is (B).", label: "B", rationale: "Gulls are seabirds. Seabirds live by the sea." }],
  ["numbered steps", { text: "1. Gulls eat fish.\n2. Fish live in the sea.\n\nThe correct answer is B.", label: "B", rationale: "Gulls eat fish. Fish live in the sea." }],
  ["lone (B) on the last line", { text: "Gulls need water to find food.\n\n(B)", label: "B", rationale: "Gulls need water to find food." }],
  ["lone B) sea on the last line", { text: "Gulls need water to find food.\nB) sea", label: "B", rationale: "Gulls need water to find food." }],
  ["'the best option is'", { text: "Deserts are dry and mines are underground, thus the best option is (B) sea.", label: "B", rationale: "Deserts are dry and mines are underground." }],
  ["'In conclusion,' trimmed", { text: "Gulls hunt fish along coasts. In conclusion, the answer is B.", label: "B", rationale: "Gulls hunt fish along coasts." }],
  ["'This means' trimmed", { text: "Gulls nest on cliffs by the water. This means the answer is (b) sea.", label: "B", rationale: "Gulls nest on cliffs by the water." }],
  ["answer restated in the same words", { text: "The answer is B. Gulls are seabirds. So the answer is B.", label: "B", rationale: "Gulls are seabirds." }],
  ["answer likely", { text: "Gulls are mostly found at the coast, so the answer is likely B.", label: "B", rationale: "Gulls are mostly found at the coast." }],
  ["lower-case label without parentheses", { text: "gulls like water so the answer is b", label: "B", rationale: "gulls like water." }],
  ["a sign-off after the answer", { text: "Gulls live by the sea. So the answer is (b).\n\nLet me know if you need anything else!", label: "B", rationale: "Gulls live by the sea." }],
  ["the template's own 'The answer must be'", { text: "The answer must be a place where gulls find food. Of the above choices, only the sea has fish. So the answer is (b).", label: "B", rationale: "The answer must be a place where gulls find food. Of the above choices, only the sea has fish." }],
  ["'the best option is' describing, not answering", { text: "The best option is the one that is near the sea. So the answer is (b).", label: "B", rationale: "The best option is the one that is near the sea." }],
  ["'Correct answer:'", { text: "Gulls are seabirds.\nCorrect answer: (B)", label: "B", rationale: "Gulls are seabirds." }],
  ["'Hence the answer: B'", { text: "Gulls need fish, hence the answer: B", label: "B", rationale: "Gulls need fish." }],
  ["'I would choose'", { text: "Gulls are seabirds, so I would choose (B) sea.", label: "B", rationale: "Gulls are seabirds." }],
  ["verdict after the label", { text: "Gulls are seabirds. Therefore, (B) sea is the correct answer.", label: "B", rationale: "Gulls are seabirds." }],
  ["verdict first, reasons after", { text: "Option B is correct. Gulls live and feed by the sea.", label: "B", rationale: "Gulls live and feed by the sea." }],
  ["an article is not a verdict", { text: "A gull is the best example of a seabird. So the answer is (b).", label: "B", rationale: "A gull is the best example of a seabird." }],
  ["echoes the Answer Choices line", { text: "Answer Choices: (a) desert (b) sea (c) mine\nGulls are seabirds. So the answer is (b).", label: "B", rationale: "Answer Choices: (a) desert (b) sea (c) mine Gulls are seabirds." }],
  ["'Answer:' alone, the answer on the next line", { text: "Gulls are seabirds, unlike (a) or (c).\n\nAnswer:\n(B) sea\n\nThey feed on fish, not on (c).", label: "B", rationale: "Gulls are seabirds, unlike (a) or (c)." }],
  ["'option (b)'", { text: "Gulls hunt fish. The answer is option (b).", label: "B", rationale: "Gulls hunt fish." }],
  ["'choice B'", { text: "Gulls hunt fish. The answer is choice B.", label: "B", rationale: "Gulls hunt fish." }],
  ["'B: sea'", { text: "Gulls hunt fish. The answer is B: sea.", label: "B", rationale: "Gulls hunt fish." }],
  ["bold Final Answer with the label inside", { text: "Gulls hunt fish in the sea.\n\n**Final Answer: (B)**", label: "B", rationale: "Gulls hunt fish in the sea." }],
  ["Final Answer line restating 'the final answer is'", { text: "Gulls hunt fish in the sea.\n\nFinal Answer: The final answer is (B).", label: "B", rationale: "Gulls hunt fish in the sea." }],
  ["'The answer is:' with a colon", { text: "Gulls are seabirds.\nThe answer is: (b) sea", label: "B", rationale: "Gulls are seabirds." }],
  ["a seventh choice (labels beyond E)", { text: "Gulls nest on cliffs. So the answer is (G).", choices: [...gull, ...["D", "E", "F", "G"].map((label) => ({ label, text: `place ${label}` }))], label: "G", rationale: "Gulls nest on cliffs." }],
  ["'Option G is correct' with seven choices", { text: "Option G is correct. Gulls nest on cliffs.", choices: [...gull, ...["D", "E", "F", "G"].map((label) => ({ label, text: `place ${label}` }))], label: "G", rationale: "Gulls nest on cliffs." }],
  // label first
  ["Answer first, Explanation after", { text: "Answer: B\n\nExplanation: Gulls are seabirds that feed on fish.", label: "B", rationale: "Gulls are seabirds that feed on fish." }],
  ["bold label first, reasoning after", { text: "**B) sea**\n\nGulls are seabirds; they live and feed by the sea.", label: "B", rationale: "Gulls are seabirds; they live and feed by the sea." }],
  ["letter and period first", { text: "B. Gulls are seabirds and live near the sea.", label: "B", rationale: "Gulls are seabirds and live near the sea." }],
  ["'since' after the answer", { text: "The correct answer is (B) sea, since gulls are seabirds.", label: "B", rationale: "Gulls are seabirds." }],
  // failures
  ["two labels: ambiguous", { text: "Hard to say. So the answer is either (a) or (c).", fails: "ambiguous" }],
  ["B or C: ambiguous", { text: "Both could work, so the answer is B or C.", fails: "ambiguous" }],
  ["narrows two candidates down to one", { text: "At first the answer is either (a) or (b). Gulls need the water, so the answer is (b).", label: "B", rationale: "At first the answer is either (a) or (b). Gulls need the water." }],
  ["changes its mind: ambiguous", { text: "The answer is (a). Gulls like sand. Answer: (C)", fails: "ambiguous" }],
  ["refusal", { text: "I'm sorry, but I can't help with that request.", fails: "refusal" }],
  ["refusal, 'As an AI'", { text: "As an AI language model, I cannot determine where gulls live.", fails: "refusal" }],
  ["no answer at all", { text: "Gulls are interesting birds with many habits.", fails: "no_answer" }],
  ["only whitespace", { text: "   \n\n ", fails: "empty" }],
  ["only a label, no rationale", { text: "So the answer is (b).", fails: "no_rationale" }],
  ["a label that is not a choice", { text: "Gulls fly. So the answer is (f).", fails: "no_answer" }],
  ["only reasoning, nothing visible", { text: "<think>gulls live by the sea</think>", fails: "empty" }],
  // reasoning models
  ["reasoning_content beside the answer", { text: "Gulls are seabirds. So the answer is (b).", reasoningContent: "Gulls... hmm, desert no.", label: "B", rationale: "Gulls are seabirds.", reasoning: "Gulls... hmm, desert no." }],
  ["<think> then explanation then answer", { text: "<think>\nWhere do gulls live? Coasts.\n</think>\n\nGulls live on coasts.\n\n**Answer:** B", label: "B", rationale: "Gulls live on coasts.", reasoning: "Where do gulls live? Coasts." }],
  ["</think> without its opening tag", { text: "they live by water, sea it is</think>\n\nThe answer is (B).", label: "B", rationale: "", reasoning: "they live by water, sea it is" }],
  ["changes its mind only inside <think>", { text: "<think>Maybe (a)? No, the answer is (b).</think>\nGulls eat fish. So the answer is (b).", label: "B", rationale: "Gulls eat fish.", reasoning: "Maybe (a)? No, the answer is (b)." }],
  // structured output
  ["JSON {rationale, answer}", { text: '{"rationale": "Gulls are seabirds.", "answer": "B"}', label: "B", rationale: "Gulls are seabirds." }],
  ["JSON in a code fence", { text: '```json\n{"rationale": "Gulls hunt fish at sea.", "answer": "(B)"}\n```', label: "B", rationale: "Gulls hunt fish at sea." }],
  ["JSON with an invalid label", { text: '{"rationale": "Gulls.", "answer": "Z"}', fails: "no_answer" }],
  // math
  ["math PaLM", { format: "math", text: "5 * 3 = 15. The answer is 15.", label: "15", rationale: "5 * 3 = 15." }],
  ["math commas and dollars", { format: "math", text: "He earns 1,000 + 250. So the answer is $1,250.00.", label: "1250", rationale: "He earns 1,000 + 250." }],
  ["math arithmetic answer", { format: "math", text: "Split it. The answer is (84 / 2).", label: "42", rationale: "Split it." }],
  ["math boxed", { format: "math", text: "Tom has 3 + 4 = 7 balls.\n\n$\\boxed{7}$", label: "7", rationale: "Tom has 3 + 4 = 7 balls." }],
  ["math boxed in 'final answer is'", { format: "math", text: "There are 21 - 15 = 6 more trees.\n\nThe final answer is $\\boxed{6}$.", label: "6", rationale: "There are 21 - 15 = 6 more trees." }],
  ["math GSM8K ####", { format: "math", text: "She had 32 + 42 = 74, then 74 - 35 = 39.\n#### 39", label: "39", rationale: "She had 32 + 42 = 74, then 74 - 35 = 39." }],
  ["math Answer: with units", { format: "math", text: "8 - 3 = 5 apples remain.\nAnswer: 5 apples", label: "5", rationale: "8 - 3 = 5 apples remain." }],
  ["math answer with an equation", { format: "math", text: "Each box has 4 pens and there are 3 boxes. The answer is 4 * 3 = 12.", label: "12", rationale: "Each box has 4 pens and there are 3 boxes." }],
  ["math decimal", { format: "math", text: "Half of 5 is 2.5. So the answer is 2.5.", label: "2.5", rationale: "Half of 5 is 2.5." }],
  ["math negative", { format: "math", text: "It falls 3 below zero. The answer is -3.", label: "-3", rationale: "It falls 3 below zero." }],
  ["math last bare number with reasoning", { format: "math", text: "<think>3+4=7</think>\n7", label: "7", rationale: "", reasoning: "3+4=7" }],
  ["math percentage", { format: "math", text: "Half of them is 50 of 100. The answer is 50%.", label: "50", rationale: "Half of them is 50 of 100." }],
  ["math fraction", { format: "math", text: "Three of four slices are left. The answer is 3/4.", label: "0.75", rationale: "Three of four slices are left." }],
  ["math in LaTeX dollars", { format: "math", text: "$3 + 4 = 7$. The answer is $7$.", label: "7", rationale: "$3 + 4 = 7$." }],
  ["math bold after 'The answer is:'", { format: "math", text: "Tom has 3 + 4 = 7 balls.\n\nThe answer is: **7**", label: "7", rationale: "Tom has 3 + 4 = 7 balls." }],
  ["math 'or': ambiguous", { format: "math", text: "It depends on rounding. The answer is 5 or 6.", fails: "ambiguous" }],
  ["math JSON number", { format: "math", text: '{"rationale": "15 - 6 = 9.", "answer": 9}', label: "9", rationale: "15 - 6 = 9." }],
  // yes / no
  ["yes/no PaLM", { format: "yes-no", text: "Hamsters are prey animals. Thus, hamsters provide food for some animals. So the answer is yes.", label: "yes", rationale: "Hamsters are prey animals. Thus, hamsters provide food for some animals." }],
  ["yes/no label first", { format: "yes-no", text: "No. A pear is less dense than water, so it floats.", label: "no", rationale: "A pear is less dense than water, so it floats." }],
  ["yes/no 'No, because'", { format: "yes-no", text: "No, because a llama's gestation is 11 months.", label: "no", rationale: "A llama's gestation is 11 months." }],
  ["yes/no bold Answer", { format: "yes-no", text: "Commencements can be in December.\n\n**Answer:** Yes", label: "yes", rationale: "Commencements can be in December." }],
  ["yes/no true/false", { format: "yes-no", text: "1 squared is 1, fewer than 5 Spice Girls. The answer is false.", label: "no", rationale: "1 squared is 1, fewer than 5 Spice Girls." }],
  ["yes/no with only the word: no rationale", { format: "yes-no", text: "No.", fails: "no_rationale" }],
  ["yes/no both: ambiguous", { format: "yes-no", text: "Yes. Actually it cannot. So the answer is no.", fails: "ambiguous" }],
  // short answer
  ["short answer PaLM", { format: "short-answer", text: "The red maple leaf flag is Canada's. Its capital is Ottawa. So the answer is Ottawa.", label: "Ottawa", rationale: "The red maple leaf flag is Canada's. Its capital is Ottawa." }],
  ["short answer Answer:", { format: "short-answer", text: "Plants use photosynthesis.\n\nAnswer: **carbon dioxide**", label: "carbon dioxide", rationale: "Plants use photosynthesis." }],
  ["short answer label first", { format: "short-answer", text: "The answer is William Shakespeare, because he wrote Romeo and Juliet.", label: "William Shakespeare", rationale: "He wrote Romeo and Juliet." }],
  ["short answer 'either … or': ambiguous", { format: "short-answer", text: "Sources differ. The answer is either Sydney or Canberra.", fails: "ambiguous" }],
  ["short answer refusal", { format: "short-answer", text: "I cannot answer questions about that.", fails: "refusal" }],
];

describe("issue 12's table: answers as instruct models write them", () => {
  for (const c of issueTable) test(JSON.stringify(c.text), () => check(c));
});

describe("real-looking completions across formats", () => {
  test("the table has at least 40 cases", () => expect(cases.length).toBeGreaterThanOrEqual(40));
  for (const [name, c] of cases) test(name, () => check(c));
});
