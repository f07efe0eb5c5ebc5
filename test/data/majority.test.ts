/**
 * The controlled "majority" task: one fixed world (names with hidden, balanced colours) shared by every split;
 * each label is the colour most of the question's names have (never a tie); the gold rationale states each name's
 * colour in the world and the vote; train and test never share a name set; seeded and served by the registry.
 */
import { expect, test } from "bun:test";
import { COLOURS } from "../../src/data/hops.ts";
import { majorityOf, majoritySpec, majoritySplit, majorityWorld, questionCount } from "../../src/data/majority.ts";
import { datasetNames, getDataset, loadSplit } from "../../src/data/registry.ts";
import { loadRationales } from "../../src/distill/rationales.ts";

const names = (question: string) => /^Colour of most: ([a-z ]+)\?$/.exec(question)![1].split(" ");

test("every label is the world's majority colour of the question's names, and the rationale states each name's colour", () => {
  for (const name of ["majority", "majority-60x5", "majority-20x4"]) {
    const spec = majoritySpec(name)!;
    const world = majorityWorld(spec.symbols);
    const colourOf = new Map(world.names.map((n, i) => [n, COLOURS[world.colours[i]]]));
    for (const item of majoritySplit(name, "train").slice(0, 300)) {
      const asked = names(item.question);
      expect(asked.length).toBe(spec.k);
      expect(new Set(asked).size).toBe(spec.k);
      expect(item.choices!.map((c) => c.text)).toEqual([...COLOURS]);
      // recount the vote independently of the generator
      const tally = new Map<string, number>();
      for (const n of asked) tally.set(colourOf.get(n)!, (tally.get(colourOf.get(n)!) ?? 0) + 1);
      const top = Math.max(...tally.values());
      const winners = [...tally].filter(([, c]) => c === top).map(([colour]) => colour);
      expect(winners.length).toBe(1);
      expect(item.choices!.find((c) => c.label === item.answer)!.text).toBe(winners[0]);
      expect(item.rationale).toBe([...asked.map((n) => `${n} is ${colourOf.get(n)}.`), `Most are ${winners[0]}.`].join(" "));
    }
  }
});

test("the world is fixed and balanced; ties are detected; the count of tie-free questions is exact", () => {
  const world = majorityWorld(40);
  expect(majorityWorld(40)).toEqual(world);
  expect(new Set(world.names).size).toBe(40);
  for (let c = 0; c < COLOURS.length; c++) expect(world.colours.filter((x) => x === c).length).toBe(8);
  expect(majorityOf([0, 1, 0])).toBe(0);
  expect(majorityOf([0, 1, 2])).toBeNull();
  expect(majorityOf([3, 3, 1, 1, 2])).toBeNull();
  // brute force over every 3-subset of a 10-name world (2 names per colour)
  const colours = majorityWorld(10).colours;
  let brute = 0;
  for (let a = 0; a < 10; a++) for (let b = a + 1; b < 10; b++) for (let c = b + 1; c < 10; c++) if (majorityOf([colours[a], colours[b], colours[c]]) !== null) brute++;
  expect(questionCount(10, 3)).toBe(brute);
  expect(questionCount(40, 3)).toBe(4760);
});

test("seeded: the same items every time; train and test share no name set; labels spread over the five choices", () => {
  const train = majoritySplit("majority", "train");
  expect(majoritySplit("majority", "train")).toEqual(train);
  expect(train.length).toBe(3000);
  const key = (q: string) => names(q).sort().join(" ");
  const seen = new Set(train.map((i) => key(i.question)));
  expect(seen.size).toBe(3000);
  const testItems = majoritySplit("majority", "test");
  expect(testItems.length).toBe(500);
  expect(testItems.filter((i) => seen.has(key(i.question))).length).toBe(0);
  const counts = new Map<string, number>();
  for (const item of train) counts.set(item.answer, (counts.get(item.answer) ?? 0) + 1);
  expect([...counts.keys()].sort()).toEqual(["A", "B", "C", "D", "E"]);
  for (const n of counts.values()) expect(Math.abs(n / train.length - 0.2)).toBeLessThan(0.03);
});

test("the registry serves majority variants with their template, a dev split and gold rationales; bad variants are refused", async () => {
  expect(datasetNames()).toContain("majority");
  expect(getDataset("majority-60x5").template?.prompt).toBe("{question}");
  const dev = await loadSplit("majority", "dev");
  const train = await loadSplit("majority", "train", { excludeDev: true });
  expect(dev.length + train.length).toBe(3000);
  expect(await loadRationales("majority", train.slice(0, 3))).toEqual(train.slice(0, 3).map((i) => i.rationale!));
  // a small world: the splits share the tie-free questions there are
  const small = majoritySpec("majority-10x3")!;
  expect(small.sizes.train + small.sizes.test).toBe(questionCount(10, 3));
  expect(majoritySplit("majority-10x3", "test").length).toBe(small.sizes.test);
  expect(() => getDataset("majority-42x3")).toThrow(/multiple of 5/);
  expect(() => getDataset("majority-40x0")).toThrow(/between 1 and 40/);
});
