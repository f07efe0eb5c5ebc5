/**
 * `eval --temperature/--top-p/--seed`: sampled generation from the CLI is reproducible from its seed and recorded
 * in the summary; a bad setting is one readable line and exit 1, before any GPU work.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { runCli } from "../helpers/cli.ts";
import { familyModelFolder } from "../helpers/families.ts";
import { isolatedCache, syntheticDataset } from "../eval/synthetic.ts";

isolatedCache();
const data = syntheticDataset({ train: 4, test: 3 });
const model = await familyModelFolder("llama", 1, 128);
afterAll(() => rmSync(model, { recursive: true, force: true }));
const env = { COT_DISTILL_DATASETS: data.dir };

test("sampled evaluation is reproducible from --seed and says how it decoded", () => {
  const args = ["eval", "--run", model, "--dataset", data.name, "--limit", "3", "--temperature", "1.5", "--top-p", "0.9", "--seed", "4", "--json"];
  const a = runCli(args, env);
  expect(a.stderr).not.toContain("error");
  expect(a.code).toBe(0);
  const summary = JSON.parse(a.stdout);
  expect(summary.sampling).toEqual({ temperature: 1.5, top_p: 0.9, seed: 4 });
  const first = readFileSync(summary.predictionsFile, "utf8");
  expect(first.trim().split("\n")).toHaveLength(3);
  const b = runCli(args, env);
  expect(b.code).toBe(0);
  expect(readFileSync(JSON.parse(b.stdout).predictionsFile, "utf8")).toBe(first);
}, 300_000);

test("a bad sampling flag is one line naming it, exit 1", () => {
  const out = runCli(["eval", "--run", model, "--dataset", data.name, "--top-p", "0"], env);
  expect(out.code).toBe(1);
  expect(out.stderr.trim().split("\n")).toHaveLength(1);
  expect(out.stderr).toContain("--top-p: top_p must be > 0");
});
