import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { builtinTemplate, loadTemplate, templateFor, templateFromText } from "../../src/teacher/prompts.ts";
import { parseCompletion } from "../../src/teacher/parse.ts";

const CQA_FILE = join(import.meta.dir, "../../src/teacher/exemplars/cqa.json");

describe("few-shot templates", () => {
  test("multiple choice renders Q / Answer Choices / A and ends ready for the teacher", () => {
    const prompt = templateFor({
      question: "Where is milk kept?",
      choices: [
        { label: "A", text: "fridge" },
        { label: "B", text: "oven" },
      ],
    }).render({ question: "Where is milk kept?", choices: [{ label: "A", text: "fridge" }, { label: "B", text: "oven" }] });
    expect(prompt.endsWith("\n\nQ: Where is milk kept?\nAnswer Choices: (a) fridge (b) oven\nA:")).toBe(true);
    expect(prompt).toContain("Answer Choices: (a) shirt pocket (b) calligrapher's hand");
    expect(prompt.match(/So the answer is \([a-e]\)\./g)?.length).toBe(7);
  });

  test("math renders without choices and with numeric answers", () => {
    const template = templateFor({ question: "Tom has 3 apples and gets 4 more. How many?" }, { format: "math" });
    expect(template.format).toBe("math");
    const prompt = template.render({ question: "Tom has 3 apples and gets 4 more. How many?" });
    expect(prompt).not.toContain("Answer Choices");
    expect(prompt).toContain("So the answer is 39.");
    expect(prompt.endsWith("Q: Tom has 3 apples and gets 4 more. How many?\nA:")).toBe(true);
  });

  test("an item without choices gets the template of its gold answer's shape", () => {
    expect(templateFor({ question: "Do gulls swim?", answer: "yes" }).format).toBe("yes-no");
    expect(templateFor({ question: "Capital of France?", answer: "Paris" }).format).toBe("short-answer");
    expect(templateFor({ question: "Capital of France?", answer: "Paris" }).render({ question: "Capital of France?" })).toContain("So the answer is Ottawa.");
    expect(templateFor({ question: "3 + 4?", answer: "7" }).format).toBe("math");
  });

  test("every shipped exemplar parses back to its own answer", () => {
    const files = [["cqa.json", "multiple-choice"], ["svamp.json", "math"], ["strategyqa.json", "yes-no"], ["short-answer.json", "short-answer"]] as const;
    for (const [file, format] of files) {
      const json = JSON.parse(readFileSync(join(import.meta.dir, "../../src/teacher/exemplars", file), "utf8"));
      const shots = builtinTemplate(format).render({ question: "x" }).split("\n\nQ: ").slice(0, -1);
      expect(shots.length).toBe(json.exemplars.length);
      shots.forEach((shot, i) => {
        const completion = shot.slice(shot.indexOf("\nA:") + 3);
        const parsed = parseCompletion(completion, format, json.exemplars[i].choices);
        expect(parsed.label).toBe(json.exemplars[i].answer);
        expect(parsed.rationale).toBe(json.exemplars[i].rationale);
      });
    }
  });

  test("the version names the template and changes when the exemplar file is edited", () => {
    const original = readFileSync(CQA_FILE, "utf8");
    const shipped = loadTemplate(CQA_FILE).version;
    expect(shipped).toMatch(/^cqa-cot@1\+[0-9a-f]{8}$/);
    const dir = mkdtempSync(join(tmpdir(), "cot-prompts-"));
    const edited = join(dir, "cqa.json");
    writeFileSync(edited, original.replace("only blotters are used", "blotters are used"));
    expect(loadTemplate(edited).version).not.toBe(shipped);
    writeFileSync(edited, original);
    expect(loadTemplate(edited).version).toBe(shipped);
  });

  test("a broken exemplar file is a readable user error", () => {
    expect(() => templateFromText("{", "x.json")).toThrow(/x\.json: not JSON/);
    expect(() => templateFromText(JSON.stringify({ name: "a", revision: 1, format: "math", exemplars: [] }), "y.json")).toThrow(
      /y\.json: exemplars/,
    );
  });
});
