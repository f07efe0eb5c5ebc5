/** `score` and `train-lm` as a user runs them: real child processes of `bun src/cli.ts`, real files. */
import { expect, test } from "bun:test";
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadHFModel } from "../../src/model/hf.ts";
import { loadTokenizer } from "../../src/model/tokenizer.ts";
import { readSafetensorsFile, serializeSafetensors, toFloat32 } from "../../src/model/safetensors.ts";
import { decoderForwardBackward } from "../../src/reference/decoder.ts";
import { readMetrics } from "../../src/train/metrics.ts";
import { PROJECT_ROOT, runCli } from "../helpers/cli.ts";

const TINY = join(PROJECT_ROOT, "test/fixtures/tiny-random-gpt2");

const cli = (...args: string[]) => runCli(args);

/** Mean next-token loss of `ids` under the float64 reference model. */
async function referenceLoss(dir: string, ids: number[]): Promise<number> {
  const { config, params } = await loadHFModel(dir);
  const T = ids.length;
  const batch = {
    tokens: Uint32Array.from(ids),
    targets: Uint32Array.from(ids, (_, t) => ids[t + 1] ?? 0),
    weights: Float64Array.from(ids, (_, t) => (t < T - 1 ? 1 : 0)),
    B: 1,
    T,
  };
  return decoderForwardBackward(config, Float64Array.from(params), batch).loss;
}

test("score --ids --json prints the mean next-token loss the float64 reference computes", async () => {
  const ids = [5, 17, 250, 999, 0, 42, 42, 7];
  const out = cli("score", "--model", TINY, "--ids", ids.join(","), "--json");
  expect(out.code).toBe(0);
  const result = JSON.parse(out.stdout);
  expect(result.tokens).toBe(ids.length - 1);
  expect(Math.abs(result.loss - (await referenceLoss(TINY, ids))) / result.loss).toBeLessThan(1e-5);
});

test("score --text tokenizes with the model folder's BPE", async () => {
  const text = "Hello world, this is a test.";
  const ids = (await loadTokenizer(TINY)).encode(text);
  const fromText = JSON.parse(cli("score", "--model", TINY, "--text", text, "--json").stdout);
  const fromIds = JSON.parse(cli("score", "--model", TINY, "--ids", ids.join(","), "--json").stdout);
  expect(fromText).toEqual(fromIds);
  expect(fromText.tokens).toBe(ids.length - 1);
});

test("score refuses bad input with one readable line", () => {
  const tooLong = cli("score", "--model", TINY, "--ids", Array.from({ length: 513 }, () => "1").join(","), "--json");
  expect(tooLong.code).toBe(1);
  expect(tooLong.stderr.trim()).toBe("cot-distill: input is 513 tokens, longer than the model's n_positions (512)");
  const outOfVocab = cli("score", "--model", TINY, "--ids", "1,2,1000");
  expect(outOfVocab.code).toBe(1);
  expect(outOfVocab.stderr).toMatch(/^cot-distill: (token|target) id 1000 is outside the vocabulary \(1000\)\n$/);
  const both = cli("score", "--model", TINY, "--ids", "1,2", "--text", "hi");
  expect(both.code).toBe(1);
  expect(both.stderr.trim()).toBe("cot-distill: give exactly one of --text or --ids");
});

test("a model folder with a missing or mis-shaped tensor is refused, naming the tensor and both shapes", async () => {
  const file = await readSafetensorsFile(join(TINY, "model.safetensors"));
  const write = (dir: string, edit: (name: string, data: Float32Array, shape: number[]) => { shape: number[]; data: Float32Array } | null) => {
    const tensors = [];
    for (const [name, entry] of file.tensors) {
      const edited = edit(name, toFloat32(entry), entry.shape);
      if (edited) tensors.push({ name, ...edited });
    }
    writeFileSync(join(dir, "model.safetensors"), serializeSafetensors(tensors, { format: "pt" }));
  };
  const missing = mkdtempSync(join(tmpdir(), "cot-missing-"));
  cpSync(TINY, missing, { recursive: true });
  write(missing, (name, data, shape) => (name.endsWith("h.2.mlp.c_fc.bias") ? null : { data, shape }));
  const a = cli("score", "--model", missing, "--ids", "1,2,3");
  expect(a.code).toBe(1);
  expect(a.stderr).toMatch(/missing tensor transformer\.h\.2\.mlp\.c_fc\.bias/);

  const misshaped = mkdtempSync(join(tmpdir(), "cot-shape-"));
  cpSync(TINY, misshaped, { recursive: true });
  write(misshaped, (name, data, shape) =>
    name.endsWith("h.0.attn.c_proj.weight") ? { data: data.subarray(0, 16 * 64), shape: [16, 64] } : { data, shape },
  );
  const b = cli("score", "--model", misshaped, "--ids", "1,2,3");
  expect(b.code).toBe(1);
  expect(b.stderr).toMatch(/tensor (transformer\.)?h\.0\.attn\.c_proj\.weight has shape \[16, 64\], expected \[32, 32\]/);
});

test("train-lm from a preset trains, then --resume continues and the final folder scores with the CLI", () => {
  const out = mkdtempSync(join(tmpdir(), "cot-trainlm-"));
  const data = join(out, "corpus.txt");
  writeFileSync(data, Array.from({ length: 40 }, (_, i) => `The robot counted ${i} apples and ${2 * i} pears.`).join("\n\n"));
  const common = ["--model", "scratch-micro", "--data", data, "--out", out, "--seq-len", "24", "--vocab-size", "300", "--checkpoint-every", "5"];
  const first = cli("train-lm", ...common, "--steps", "20");
  expect(first.code).toBe(0);
  const metrics = readMetrics(join(out, "metrics.jsonl"));
  expect(metrics).toHaveLength(20);
  expect(metrics[19].loss).toBeLessThan(metrics[0].loss);
  const again = cli("train-lm", ...common, "--steps", "20", "--resume");
  expect(again.code).toBe(0);
  expect(again.stderr).toContain("resumed at 20");
  const scored = cli("score", "--model", join(out, "model"), "--text", "The robot counted 3 apples and 6 pears.", "--json");
  expect(scored.code).toBe(0);
  expect(JSON.parse(scored.stdout).loss).toBeLessThan(metrics[0].loss);
  const bad = cli("train-lm", "--model", "scratch-micro", "--data", join(out, "nope.txt"), "--steps", "1", "--out", out);
  expect(bad.code).toBe(1);
  expect(bad.stderr.trim()).toBe(`cot-distill: --data: no such file ${join(out, "nope.txt")}`);
});
