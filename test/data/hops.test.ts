/**
 * The controlled "hops" task: seeded (the same items in every process), the label is what the facts say about the
 * asked name, the gold rationale states exactly the facts followed, labels are balanced near chance, train and test
 * differ, and the registry serves it with its own compact template and a dev split.
 */
import { expect, test } from "bun:test";
import { COLOURS, hopsSpec, hopsSplit } from "../../src/data/hops.ts";
import { datasetNames, getDataset, loadSplit } from "../../src/data/registry.ts";
import { loadRationales } from "../../src/distill/rationales.ts";

/** Follows the question's facts from the asked name to its colour, as a perfect reader would. */
function solve(question: string): { colour: string; path: string[] } {
  const facts = new Map<string, string>();
  for (const [, name, rest] of question.matchAll(/(\w+) is ([^.]+)\./g)) facts.set(name, rest);
  let name = /Colour of (\w+)\?$/.exec(question)![1];
  const path = [name];
  for (;;) {
    const said = facts.get(name)!;
    if (!said.includes(",")) {
      name = said;
      path.push(name);
      continue;
    }
    return { colour: said.split(",")[0], path };
  }
}

test("every label is the colour the asked name's facts lead to, and the rationale states those facts", () => {
  for (const name of ["hops", "hops-2x3", "hops-3x2"]) {
    const spec = hopsSpec(name)!;
    for (const item of hopsSplit(name, "train").slice(0, 200)) {
      const { colour, path } = solve(item.question);
      expect(path.length).toBe(spec.hops);
      expect(item.choices!.map((c) => c.text)).toEqual([...COLOURS]);
      expect(item.choices!.find((c) => c.label === item.answer)!.text).toBe(colour);
      // the rationale: one sentence per name followed, in order, each a fact of the question
      const sentences = item.rationale!.split(/(?<=\.)\s+/);
      expect(sentences.length).toBe(spec.hops);
      sentences.forEach((s, i) => {
        expect(s.startsWith(`${path[i]} is `)).toBe(true);
        expect(item.question).toContain(s);
      });
      expect((item.question.match(/\./g) ?? []).length).toBe(spec.hops * spec.chains);
    }
  }
});

test("seeded: the same items every time; train and test differ; labels spread over the five choices", () => {
  const a = hopsSplit("hops", "train");
  expect(hopsSplit("hops", "train")).toEqual(a);
  expect(a.length).toBe(4000);
  const test = new Set(hopsSplit("hops", "test").map((i) => i.question));
  expect(a.filter((i) => test.has(i.question)).length).toBe(0);
  const counts = new Map<string, number>();
  for (const item of a) counts.set(item.answer, (counts.get(item.answer) ?? 0) + 1);
  expect([...counts.keys()].sort()).toEqual(["A", "B", "C", "D", "E"]);
  for (const n of counts.values()) expect(Math.abs(n / a.length - 0.2)).toBeLessThan(0.03);
});

test("the registry serves hops variants with their template, a dev split and gold rationales", async () => {
  expect(datasetNames()).toContain("hops");
  const dataset = getDataset("hops-2x3");
  expect(dataset.template?.prompt).toBe("{question}");
  const dev = await loadSplit("hops-2x3", "dev");
  const train = await loadSplit("hops-2x3", "train", { excludeDev: true });
  expect(dev.length + train.length).toBe(4000);
  expect(new Set([...dev, ...train].map((i) => i.index)).size).toBe(4000);
  expect(await loadRationales("hops-2x3", train.slice(0, 3))).toEqual(train.slice(0, 3).map((i) => i.rationale!));
  expect(() => getDataset("hops-0x2")).toThrow(/at least 1/);
});
