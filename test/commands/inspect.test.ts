/** `inspect` and the fit check of train-lm, as a user runs them (real child processes, the real adapter's limits). */
import { expect, test } from "bun:test";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parameterCount } from "../../src/model/family.ts";
import { readConfig } from "../../src/model/hf.ts";
import { loraLayout, loraParameterCount } from "../../src/model/lora.ts";
import { formatBytes, memoryPlan } from "../../src/model/memory.ts";
import { PROJECT_ROOT, runCli } from "../helpers/cli.ts";

const LLAMA = join(PROJECT_ROOT, "test/fixtures/families/llama");
const TINY = join(PROJECT_ROOT, "test/fixtures/tiny-random-gpt2");

test("inspect --json: family, parameters by part, trainable, the memory plan and the adapter's verdict", async () => {
  const out = runCli(["inspect", "--model", LLAMA, "--batch-size", "2", "--max-tokens", "16", "--json"]);
  expect(out.code).toBe(0);
  const r = JSON.parse(out.stdout);
  const config = await readConfig(LLAMA);
  expect(r.family).toBe("llama");
  expect(r.parameters).toBe(parameterCount(config));
  expect(Object.values(r.groups as Record<string, number>).reduce((a, b) => a + b, 0)).toBe(r.parameters);
  expect(r.groups.head).toBeGreaterThan(0); // this fixture's head is untied
  expect(r.trainable.tiedHead).toBe(false);
  expect(r.memory.total).toBe(memoryPlan(config, { B: 2, T: 16, training: true }).total);
  expect(r.memory.optimizer).toBe(2 * r.memory.weights);
  expect(r.fits).toBe(true);
  expect(r.adapter.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
});

test("a run over the adapter's binding limit: inspect says by how much and what fits; train-lm refuses it before starting", () => {
  // the MLP's h0.fc: 600·512·128 floats = 150 MiB, over llvmpipe's (and WebGPU's default) 128 MiB (the fused head
  // keeps its logits chunk within the limit and attention keeps no T×T buffer: see memory.test.ts)
  const args = ["--model", TINY, "--batch-size", "600"];
  const inspect = runCli(["inspect", ...args, "--max-tokens", "512"]);
  expect(inspect.code).toBe(0);
  const limit = Number(/maxStorageBufferBindingSize (\d+) MiB/.exec(inspect.stdout)?.[1] ?? "128");
  const over = formatBytes(600 * 512 * 128 * 4 - limit * 2 ** 20);
  expect(inspect.stdout).toContain(`does not fit: buffer h0.fc needs 150 MiB, over the adapter's maxStorageBufferBindingSize (${limit} MiB) by ${over}`);
  const out = join(mkdtempSync(join(tmpdir(), "cot-fit-")), "run");
  const train = runCli(["train-lm", ...args, "--seq-len", "512", "--data", join(TINY, "vocab.json"), "--steps", "1", "--out", out]);
  expect(train.code).toBe(1);
  const lines = train.stderr.trim().split("\n").filter((l) => l.startsWith("cot-distill:"));
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`^cot-distill: the run cannot fit the GPU: buffer h0\\.fc needs 150 MiB, over the adapter's maxStorageBufferBindingSize \\(${limit} MiB\\) by ${over}.*; --batch-size \\d+ fits at 512 tokens$`));
  expect(existsSync(out)).toBe(false);
});

test("without an adapter, inspect prints the plan alone", () => {
  const out = runCli(["inspect", "--model", TINY, "--json"], { COT_DISTILL_ADAPTER: "no-such-adapter-anywhere" });
  expect(out.code).toBe(0);
  const r = JSON.parse(out.stdout);
  expect(r.adapter).toBeNull();
  expect(r.fits).toBeNull();
  expect(r.memory.total).toBeGreaterThan(0);
});

test("inspect --lora-rank: the adapters are what trains; no base gradients or moments in the plan", async () => {
  const out = runCli(["inspect", "--model", LLAMA, "--batch-size", "2", "--max-tokens", "16", "--lora-rank", "4", "--lora-targets", "q_proj,v_proj,o_proj", "--gpu-memory", "24", "--json"]);
  expect(out.code).toBe(0);
  const r = JSON.parse(out.stdout);
  const config = await readConfig(LLAMA);
  const lora = loraLayout(config, { rank: 4, alpha: 8, dropout: 0, targets: ["q_proj", "v_proj", "o_proj"] });
  expect(r.trainable).toEqual({ parameters: loraParameterCount(lora), lora: { rank: 4, alpha: 8, dropout: 0, targets: ["q_proj", "v_proj", "o_proj"], modules: 6 }, tiedHead: false });
  expect(r.memory.total).toBe(memoryPlan(config, { B: 2, T: 16, training: true, lora }).total);
  expect(r.memory.gradients).toBe(4 * lora.size);
  expect(r.gpuMemory).toEqual({ bytes: 24 * 2 ** 30, fits: true });
  const text = runCli(["inspect", "--model", LLAMA, "--lora-rank", "4", "--max-tokens", "16"]);
  expect(text.stdout).toContain(`trainable: ${loraParameterCount(loraLayout(config, { rank: 4, alpha: 8, dropout: 0, targets: ["q_proj", "v_proj"] })).toLocaleString("en-US")} in LoRA adapters (r=4, alpha=8, on q_proj,v_proj: 4 modules); the base is frozen`);
});

test("the 24 GB goal: Phi-1.5 and Gemma-2B (their config.json shapes) fine-tune with LoRA and activation checkpointing at B·T = 4096", () => {
  const plan = (model: string, B: number, T: number, ...flags: string[]) => {
    const out = runCli(["inspect", "--model", join(PROJECT_ROOT, "test/fixtures/configs", model), "--batch-size", String(B), "--max-tokens", String(T), "--gpu-memory", "24", "--json", ...flags]);
    expect(out.code).toBe(0);
    return JSON.parse(out.stdout);
  };
  for (const [model, B, T] of [["phi-1_5", 2, 2048], ["gemma-2b", 1, 4096]] as const) {
    const full = plan(model, B, T);
    expect(full.gpuMemory.fits).toBe(false); // full fine-tuning in f32 with every activation kept does not
    const lora = plan(model, B, T, "--lora-rank", "8", "--checkpoint-activations");
    expect({ model, fits: lora.gpuMemory.fits }).toEqual({ model, fits: true });
    expect(lora.memory.gradients).toBeLessThan(64 << 20); // the adapters' only
    expect(lora.memory.total).toBeLessThan(full.memory.total / 3);
  }
  // Phi-1.5's frozen base is paged within a 4 GiB maxBufferSize, and no buffer it binds passes 128 MiB: it fits llvmpipe
  const phi = plan("phi-1_5", 2, 2048, "--lora-rank", "8", "--checkpoint-activations");
  if (phi.adapter && phi.adapter.limits.maxBufferSize >= 4 * 2 ** 30 - 4 && phi.adapter.limits.maxStorageBufferBindingSize >= 128 * 2 ** 20) expect(phi.fits).toBe(true);
  // the figures README quotes
  const total = (model: string, B: number, T: number, ...flags: string[]) => formatBytes(plan(model, B, T, "--lora-rank", "8", ...flags).memory.total);
  expect([total("phi-1_5", 2, 2048, "--checkpoint-activations"), total("gemma-2b", 1, 4096, "--checkpoint-activations")]).toEqual(["7.4 GiB", "12.0 GiB"]);
  expect([total("phi-1_5", 2, 2048), total("gemma-2b", 1, 4096)]).toEqual(["20.4 GiB", "29.2 GiB"]);
});
