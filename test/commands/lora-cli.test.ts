/**
 * LoRA from the command line: `train-lm --lora-rank` on a Llama-family folder and on GPT-2 trains only adapters
 * (model/ = base + merged adapters, adapter/ = PEFT files naming the base), resumes exactly, and a run's adapter
 * folder evaluates like its merged model; bad LoRA flags fail in one line. (Exact resume: test/train/lora-run.test.ts.)
 */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadHFModel } from "../../src/model/hf.ts";
import { ADAPTER_CONFIG_FILE, loadAdaptedModel, loadLoraAdapter, mergeLora } from "../../src/model/lora.ts";
import { readMetrics } from "../../src/train/metrics.ts";
import { loadStudent } from "../../src/eval/student.ts";
import { familyModelFolder } from "../helpers/families.ts";
import { PROJECT_ROOT, runCli } from "../helpers/cli.ts";

const cli = (...args: string[]) => runCli(args);
const TINY = join(PROJECT_ROOT, "test/fixtures/tiny-random-gpt2");

function textFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "cot-lora-data-"));
  const path = join(dir, "data.txt");
  writeFileSync(path, "the cat sat on the mat. the dog sat on the log. ".repeat(40));
  return path;
}

test("train-lm --lora-rank on a llama folder: only the adapters change; model/ is the merge, adapter/ the PEFT files", async () => {
  const base = await familyModelFolder("llama", 3, 64);
  const data = textFile();
  const out = mkdtempSync(join(tmpdir(), "cot-lora-run-"));
  const common = ["--model", base, "--data", data, "--out", out, "--batch-size", "2", "--seq-len", "16", "--lr", "3e-2", "--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", "q_proj,v_proj,down_proj", "--checkpoint-every", "3"];
  const first = cli("train-lm", ...common, "--steps", "6");
  expect(first.stderr).toContain("LoRA r=4 on q_proj,v_proj,down_proj");
  expect(first.code).toBe(0);
  const metrics = readMetrics(join(out, "metrics.jsonl"));
  expect(metrics.length).toBe(6);
  expect(metrics.at(-1)!.loss).toBeLessThan(metrics[0].loss);

  const adapterDir = join(out, "adapter");
  const config = JSON.parse(readFileSync(join(adapterDir, ADAPTER_CONFIG_FILE), "utf8"));
  expect({ r: config.r, alpha: config.lora_alpha, targets: config.target_modules, base: config.base_model_name_or_path }).toEqual({ r: 4, alpha: 8, targets: ["q_proj", "v_proj", "down_proj"], base });
  const baseModel = await loadHFModel(base);
  const merged = await loadHFModel(join(out, "model"));
  const { layout, adapters } = await loadLoraAdapter(adapterDir, baseModel.config);
  expect(merged.params).toEqual(mergeLora(baseModel.config, baseModel.params, layout, adapters));
  // the tensors no adapter sits on are the base's, bit for bit
  const adapted = new Set(layout.adapters.map((a) => `${a.module}.weight`));
  for (const spec of baseModel.layout.tensors) {
    const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset + spec.offset * 4, spec.size * 4);
    const same = bytes(merged.params).equals(bytes(baseModel.params));
    expect({ name: spec.name, same }).toEqual({ name: spec.name, same: !adapted.has(spec.name) });
  }
  // the checkpoint holds the adapters, not a copy of the base
  expect(existsSync(join(out, "checkpoints", "step-000006", "adapter_model.safetensors"))).toBe(true);
  expect(existsSync(join(out, "checkpoints", "step-000006", "model.safetensors"))).toBe(false);

  // the adapter folder is a model for evaluation: the base it names with the adapter merged
  const adaptedModel = await loadAdaptedModel(adapterDir);
  expect(adaptedModel.params).toEqual(merged.params);
  // … and evaluation loads it so (as `eval --run <adapter folder>` does)
  const student = await loadStudent(adapterDir);
  expect(student.params).toEqual(merged.params);
  expect(student.config.family).toBe("llama");
});

test("train-lm --lora-rank on GPT-2 (Conv1D, PEFT's default c_attn), with dropout; bad LoRA flags fail in one line", () => {
  const data = textFile();
  const out = mkdtempSync(join(tmpdir(), "cot-lora-run-"));
  const run = cli("train-lm", "--model", TINY, "--data", data, "--out", out, "--batch-size", "2", "--seq-len", "16", "--steps", "4", "--lora-rank", "2", "--lora-dropout", "0.1");
  expect(run.stderr).toContain("LoRA r=2 on c_attn");
  expect(run.code).toBe(0);
  const config = JSON.parse(readFileSync(join(out, "adapter", ADAPTER_CONFIG_FILE), "utf8"));
  expect({ fan_in_fan_out: config.fan_in_fan_out, dropout: config.lora_dropout, targets: config.target_modules }).toEqual({ fan_in_fan_out: true, dropout: 0.1, targets: ["c_attn"] });
  const bad = (flags: string[]) => cli("train-lm", "--model", TINY, "--data", data, "--out", out, "--steps", "1", ...flags).stderr.trim();
  expect(bad(["--lora-rank", "0"])).toBe("cot-distill: invalid flags: --lora-rank: loraRank must be >= 1");
  expect(bad(["--lora-rank", "2", "--lora-dropout", "1"])).toBe("cot-distill: invalid flags: --lora-dropout: loraDropout must be in [0, 1)");
  expect(bad(["--lora-alpha", "4"])).toBe("cot-distill: --lora-alpha without --lora-rank: give the rank to train LoRA adapters");
  expect(bad(["--lora-rank", "2", "--lora-targets", "q_proj"])).toBe(
    'cot-distill: LoRA target module "q_proj" is not a linear module of this gpt2 model (its modules: c_attn, c_proj, c_fc)',
  );
});

test("the LoRA and checkpointing settings are run-spec fields: flags, spec files and grid cells give the same spec", async () => {
  const { parseRunSpec, runSpecFromFlags } = await import("../../src/distill/run-spec.ts");
  const fromFlags = runSpecFromFlags({ dataset: "hops", placement: "after", "lora-rank": "4", "lora-alpha": "16", "lora-dropout": "0.05", "lora-targets": "q_proj,v_proj", "checkpoint-activations": true });
  const fromJson = parseRunSpec({ dataset: "hops", placement: "after", training: { loraRank: 4, loraAlpha: 16, loraDropout: 0.05, loraTargets: "q_proj,v_proj", checkpointActivations: true } });
  expect(fromFlags).toEqual(fromJson);
  expect(() => parseRunSpec({ dataset: "hops", placement: "after", training: { loraRank: 1.5 } })).toThrow("training.loraRank: loraRank must be an integer");
});
