/**
 * PEFT adapter files: test/fixtures/peft/<family>/ is laid out by hand after PEFT's save_pretrained
 * (make_peft.py: key names, shapes, adapter_config.json fields, and PEFT's merge in float64). We read it, merge it
 * as PEFT does, write our own and read that back; the GPU forward with adapters equals the forward of the merged
 * model; and what the graph does not implement is refused in one line.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireGpu, type Gpu } from "../../src/gpu/device.ts";
import { createKernels, type Kernels } from "../../src/gpu/kernels/index.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { DecoderModel } from "../../src/model/decoder.ts";
import { loadHFModel, type LoadedModel } from "../../src/model/hf.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, DEFAULT_LORA_TARGETS, loadLoraAdapter, loraLayout, mergeLora, saveLoraAdapter } from "../../src/model/lora.ts";
import { tensorView } from "../../src/model/params.ts";
import { readSafetensorsFile, toFloat64 } from "../../src/model/safetensors.ts";
import { FIXTURE_DIR } from "../fixtures/reference.ts";
import { expectClose } from "../helpers/numeric.ts";

const CASES = { llama: join(FIXTURE_DIR, "families/llama"), gpt2: join(FIXTURE_DIR, "tiny-random-gpt2") } as const;
const peftDir = (family: string) => join(FIXTURE_DIR, "peft", family);

const models = new Map<string, Promise<LoadedModel>>();
const base = (family: keyof typeof CASES) => {
  if (!models.has(family)) models.set(family, loadHFModel(CASES[family]));
  return models.get(family)!;
};

describe("PEFT adapter files", () => {
  for (const family of ["llama", "gpt2"] as const) {
    test(`${family}: the hand-made PEFT adapter loads (names, shapes, settings) and merges as PEFT merges it`, async () => {
      const model = await base(family);
      const { layout, adapters } = await loadLoraAdapter(peftDir(family), model.config);
      const json = JSON.parse(readFileSync(join(peftDir(family), ADAPTER_CONFIG_FILE), "utf8"));
      expect(layout.settings).toEqual({ rank: json.r, alpha: json.lora_alpha, dropout: json.lora_dropout, targets: json.target_modules });
      const stored = (await readSafetensorsFile(join(peftDir(family), ADAPTER_WEIGHTS_FILE))).tensors;
      expect(layout.adapters.length * 2).toBe(stored.size);
      const merged = mergeLora(model.config, model.params, layout, adapters);
      const want = (await readSafetensorsFile(join(peftDir(family), "merged.safetensors"))).tensors;
      expect(want.size).toBe(layout.adapters.length);
      for (const [name, entry] of want) expectClose(tensorView(merged, model.layout.byName.get(name)!), toFloat64(entry), 1e-6, name);
      // everything not adapted is untouched
      const adapted = new Set(want.keys());
      for (const spec of model.layout.tensors) {
        if (!adapted.has(spec.name)) expect(tensorView(merged, spec)).toEqual(tensorView(model.params, spec));
      }
    });

    test(`${family}: our adapter files round-trip and name every tensor as PEFT does`, async () => {
      const model = await base(family);
      const peft = await loadLoraAdapter(peftDir(family), model.config);
      const dir = mkdtempSync(join(tmpdir(), "cot-lora-"));
      await saveLoraAdapter(dir, model.config, peft.layout, peft.adapters, { baseModel: "some/base" });
      const ours = (await readSafetensorsFile(join(dir, ADAPTER_WEIGHTS_FILE))).tensors;
      const theirs = (await readSafetensorsFile(join(peftDir(family), ADAPTER_WEIGHTS_FILE))).tensors;
      expect([...ours.keys()].sort()).toEqual([...theirs.keys()].sort());
      for (const [name, entry] of theirs) {
        expect(ours.get(name)!.shape).toEqual(entry.shape);
        expect(toFloat64(ours.get(name)!)).toEqual(toFloat64(entry));
      }
      const config = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"));
      const reference = JSON.parse(readFileSync(join(peftDir(family), ADAPTER_CONFIG_FILE), "utf8"));
      expect(config).toEqual({ ...reference, base_model_name_or_path: "some/base" });
      const again = await loadLoraAdapter(dir, model.config);
      expect(again.layout).toEqual(peft.layout);
      expect(again.adapters).toEqual(peft.adapters);
    });
  }

  test("PEFT's default targets per family; a target no module has, DoRA, a stranger module or a wrong shape are refused in one line", async () => {
    const llama = await base("llama");
    expect(DEFAULT_LORA_TARGETS.llama).toEqual(["q_proj", "v_proj"]);
    expect(loraLayout(llama.config, { rank: 2, alpha: 2, dropout: 0, targets: DEFAULT_LORA_TARGETS.llama }).adapters.map((a) => a.module)).toEqual([
      "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
    ]);
    expect(() => loraLayout(llama.config, { rank: 2, alpha: 2, dropout: 0, targets: ["c_attn"] })).toThrow(
      'LoRA target module "c_attn" is not a linear module of this llama model (its modules: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)',
    );
    expect(() => loraLayout(llama.config, { rank: 0, alpha: 2, dropout: 0, targets: ["q_proj"] })).toThrow("LoRA rank must be a positive integer");
    const gpt2 = await base("gpt2");
    // a GPT-2 adapter is not a Llama's
    await expect(loadLoraAdapter(peftDir("gpt2"), llama.config)).rejects.toThrow("adapter module transformer.h.0.attn.c_attn is not a linear module of this llama model");
    const dir = mkdtempSync(join(tmpdir(), "cot-lora-"));
    const peft = await loadLoraAdapter(peftDir("gpt2"), gpt2.config);
    await saveLoraAdapter(dir, gpt2.config, peft.layout, peft.adapters);
    const config = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), "utf8"));
    writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify({ ...config, use_dora: true }));
    await expect(loadLoraAdapter(dir, gpt2.config)).rejects.toThrow("use_dora = true (DoRA) is not supported");
    writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify({ ...config, r: 3 }));
    await expect(loadLoraAdapter(dir, gpt2.config)).rejects.toThrow("base_model.model.transformer.h.0.attn.c_attn.lora_A.weight has shape [2, 32], expected [3, 32]");
  });
});

describe("merged weights on the GPU", () => {
  let gpu: Gpu;
  let kernels: Kernels;
  beforeAll(async () => {
    gpu = await acquireGpu();
    kernels = await createKernels(gpu);
  });
  afterAll(() => gpu?.destroy());

  async function logits(model: DecoderModel, tokens: Uint32Array, B: number, T: number): Promise<Float32Array> {
    model.setBatch({ tokens, targets: new Uint32Array(B * T), weights: new Float32Array(B * T), B, T });
    const r = new Recorder(gpu);
    model.forward(r, 0);
    r.submit();
    return model.readLogits();
  }

  for (const family of ["llama", "gpt2"] as const) {
    test(`${family}: the merged model's logits equal the forward with the adapter applied, within 1e-5`, async () => {
      const m = await base(family);
      const { layout, adapters } = await loadLoraAdapter(peftDir(family), m.config);
      const B = 2, T = 11;
      const tokens = Uint32Array.from({ length: B * T }, (_, i) => (i * 37 + 5) % m.config.vocabSize);
      const withAdapter = new DecoderModel(gpu, kernels, m.config, { B, T, training: false, lora: layout });
      withAdapter.setParameters(m.params);
      withAdapter.setAdapters(adapters);
      const merged = new DecoderModel(gpu, kernels, m.config, { B, T, training: false });
      merged.setParameters(mergeLora(m.config, m.params, layout, adapters));
      const plain = new DecoderModel(gpu, kernels, m.config, { B, T, training: false });
      plain.setParameters(m.params);
      const [a, b, c] = [await logits(withAdapter, tokens, B, T), await logits(merged, tokens, B, T), await logits(plain, tokens, B, T)];
      expectClose(a, b, 1e-5, "adapter vs merged");
      expect(a.some((x, i) => Math.abs(x - c[i]) > 1e-3)).toBe(true); // the adapter changes the model
      for (const model of [withAdapter, merged, plain]) model.destroy();
    });
  }
});
