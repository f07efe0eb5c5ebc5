/**
 * SVAMP as packaged by Distilling Step-by-Step: svamp_<split>.json gives the split and its ORDER (the PaLM rationales
 * are aligned with it) as {"input": Body + "\n" + Question, "label": equation}; SVAMP.json gives each problem's id and
 * numeric Answer. Each split row is matched back to its SVAMP.json problem by text.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { readJsonLines } from "./jsonl.ts";
import type { Item } from "./types.ts";

interface SvampProblem {
  ID: string;
  Body: string;
  Question: string;
  Answer: number;
}

function problemKey(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

async function problemsByText(dir: string): Promise<Map<string, SvampProblem>> {
  const path = join(dir, "SVAMP.json");
  const file = Bun.file(path);
  if (!(await file.exists())) throw new UserError(`dataset file not found: ${path}`, 404);
  const problems = (await file.json()) as SvampProblem[];
  return new Map(problems.map((p) => [problemKey(`${p.Body} ${p.Question}`), p]));
}

/** A number as the student should write it: 51.0 → "51", 0.5 → "0.5". */
export function formatNumber(value: number): string {
  return String(Number(value.toPrecision(12)));
}

export async function loadSvampSplit(dir: string, split: string): Promise<Item[]> {
  const path = join(dir, `svamp_${split}.json`);
  const [lines, problems] = await Promise.all([readJsonLines(path), problemsByText(dir)]);
  return lines.map((at, index) => {
    const input = at.row.input;
    if (typeof input !== "string" || input === "") throw new UserError(`${path}:${at.line}: missing field "input"`, 422);
    const problem = problems.get(problemKey(input));
    if (!problem) throw new UserError(`${path}:${at.line}: no problem in SVAMP.json has this text`, 422);
    return { id: problem.ID, dataset: "svamp", split, index, question: input, answer: formatNumber(problem.Answer) };
  });
}
