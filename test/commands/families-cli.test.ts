/**
 * Families everywhere a model is taken, as a user runs them (child processes of `bun src/cli.ts`): score, train-lm,
 * train and eval on Llama-, Gemma- and Phi-family folders, through the one loader and saver; and saliency
 * attribution (gradient × input through Gemma's scaled embeddings) in process.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadHFModel } from "../../src/model/hf.ts";
import { readSafetensorsFile } from "../../src/model/safetensors.ts";
import { decoderForwardBackward } from "../../src/reference/decoder.ts";
import { readMetrics } from "../../src/train/metrics.ts";
import { loadSplit } from "../../src/data/registry.ts";
import { saliencyAttribution } from "../../src/distill/saliency.ts";
import { loadRationales } from "../../src/distill/rationales.ts";
import { loadTokenizer } from "../../src/model/tokenizer.ts";
import { isolatedCache, sharedGpu, syntheticDataset } from "../eval/synthetic.ts";
import { runCli } from "../helpers/cli.ts";
import { familyModelFolder } from "../helpers/families.ts";

const root = mkdtempSync(join(tmpdir(), "cot-families-cli-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
isolatedCache();

async function referenceLoss(dir: string, ids: number[]): Promise<number> {
  const { config, params } = await loadHFModel(dir);
  const T = ids.length;
  const batch = { tokens: Uint32Array.from(ids), targets: Uint32Array.from(ids, (_, t) => ids[t + 1] ?? 0), weights: Float64Array.from(ids, (_, t) => (t < T - 1 ? 1 : 0)), B: 1, T };
  return decoderForwardBackward(config, Float64Array.from(params), batch).loss;
}

test.each([["llama"], ["gemma"]] as const)("score --ids on a %s folder is the float64 reference's loss", async (family) => {
  const dir = await familyModelFolder(family);
  const ids = [5, 17, 250, 999, 0, 42, 42, 7, 3, 11, 13];
  const out = runCli(["score", "--model", dir, "--ids", ids.join(","), "--json"]);
  expect(out.code).toBe(0);
  const result = JSON.parse(out.stdout);
  expect(result.tokens).toBe(ids.length - 1);
  expect(Math.abs(result.loss - (await referenceLoss(dir, ids))) / result.loss).toBeLessThan(1e-5);
});

test("train-lm fine-tunes a Llama folder and saves it back as a Llama (HF names, config keys kept)", async () => {
  const dir = await familyModelFolder("llama");
  const out = join(root, "llama-lm");
  const data = join(root, "corpus.txt");
  writeFileSync(data, Array.from({ length: 30 }, (_, i) => `The robot counted ${i % 7} apples.`).join("\n\n"));
  const run = runCli(["train-lm", "--model", dir, "--data", data, "--out", out, "--steps", "12", "--seq-len", "16", "--lr", "3e-3"]);
  expect(run.code).toBe(0);
  const metrics = readMetrics(join(out, "metrics.jsonl"));
  expect(metrics.at(-1)!.loss).toBeLessThan(metrics[0].loss);
  const saved = JSON.parse(readFileSync(join(out, "model", "config.json"), "utf8"));
  expect(saved).toMatchObject({ model_type: "llama", num_key_value_heads: 2, head_dim: 8, rope_scaling: { rope_type: "llama3" }, tie_word_embeddings: false });
  const names = [...(await readSafetensorsFile(join(out, "model", "model.safetensors"))).tensors.keys()];
  expect(names).toContain("model.layers.1.self_attn.k_proj.weight");
  expect(names).toContain("lm_head.weight");
  const scored = runCli(["score", "--model", join(out, "model"), "--text", "The robot counted 3 apples.", "--json"]);
  expect(scored.code).toBe(0);
  expect(JSON.parse(scored.stdout).loss).toBeLessThan(metrics[0].loss);
});

test("train distils into a Phi student folder, then eval reads the run", () => {
  const data = syntheticDataset({ train: 16, test: 4 });
  return familyModelFolder("phi").then((dir) => {
    const dbPath = join(root, "runs.sqlite");
    const cli = (args: string[]) => {
      const child = runCli(args, { COT_DISTILL_DATASETS: data.dir });
      if (child.code !== 0) throw new Error(child.stderr);
      return JSON.parse(child.stdout);
    };
    const outDir = join(root, "phi-run");
    const trained = cli(["train", "--dataset", data.name, "--placement", "after", "--selection", "full", "--model", dir, "--epochs", "1", "--limit", "8", "--seed", "0", "--rationales", data.rationales, "--out", outDir, "--db", dbPath, "--json"]);
    expect(trained).toMatchObject({ run_dir: outDir, examples: 8 });
    expect(JSON.parse(readFileSync(join(outDir, "model", "config.json"), "utf8"))).toMatchObject({ model_type: "phi", partial_rotary_factor: 0.4 });
    const evaluated = cli(["eval", "--run", trained.run_id, "--db", dbPath, "--split", "test", "--limit", "2", "--json"]);
    expect(evaluated).toMatchObject({ dataset: data.name, split: "test", n: 2 });
  });
});

test("an unsupported architecture is refused with one line naming it", async () => {
  const dir = await familyModelFolder("llama");
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, model_type: "mixtral", num_local_experts: 8 }));
  const out = runCli(["score", "--model", dir, "--ids", "1,2,3"]);
  expect(out.code).toBe(1);
  expect(out.stderr.trim()).toBe(`cot-distill: ${join(dir, "config.json")}: model_type "mixtral" is not supported (mixture of experts)`);
});

test("saliency attribution scores every rationale token with a Gemma folder as the attribution model", async () => {
  const data = syntheticDataset({ train: 8, test: 2, keyInRationaleOnly: true });
  const dir = await familyModelFolder("gemma");
  const { gpu, kernels } = await sharedGpu();
  const items = (await loadSplit(data.name, "train")).slice(0, 3);
  const rationales = await loadRationales(data.name, items, data.rationales);
  const attribution = await saliencyAttribution({ dataset: data.name, modelDir: dir, items: items.map((item, i) => ({ item, rationale: rationales[i]! })), gpu, kernels });
  const codec = await loadTokenizer(dir);
  items.forEach((item, i) => {
    const ids = codec.encode(` ${rationales[i]}`);
    const scores = attribution.scores(item, ids);
    expect(scores).toHaveLength(ids.length);
    expect(scores.every((x) => Number.isFinite(x) && x >= 0)).toBe(true);
    expect(scores.some((x) => x > 0)).toBe(true);
  });
});
