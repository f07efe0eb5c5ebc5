import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadHFModel, saveHFModel } from "../../src/model/hf.ts";
import { readWeights, writeWeights, WEIGHTS_INDEX_FILE } from "../../src/model/hf-weights.ts";
import { floatToBfloat16, floatToFloat16, readSafetensorsFile, toFloat32 } from "../../src/model/safetensors.ts";

const FIXTURES = join(import.meta.dir, "../fixtures");
const GPT2 = join(FIXTURES, "tiny-random-gpt2");
const SHARDED_BF16 = join(FIXTURES, "checkpoints/tiny-gpt2-bf16-sharded");
const temp = mkdtempSync(join(tmpdir(), "cot-weights-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** float32 values as torch sees them after .to(bfloat16).float(), by our own conversion. */
const throughBf16 = (x: Float32Array) => {
  const wide = new Uint32Array(x.length);
  floatToBfloat16(x).forEach((h, i) => (wide[i] = h << 16));
  return new Float32Array(wide.buffer);
};

describe("dtypes against torch (fixture by make_checkpoints.py)", async () => {
  const file = await readSafetensorsFile(join(FIXTURES, "checkpoints/dtypes.safetensors"));
  const get = (name: string) => file.tensors.get(name)!;
  const src = toFloat32(get("src"));
  const bits = (bytes: Uint8Array) => new Uint16Array(bytes.slice().buffer);

  test("float32 → bf16 and → f16 give torch's bytes (ties to even, subnormals, overflow to inf, NaN)", () => {
    const bf = floatToBfloat16(src);
    const torchBf = bits(get("as_bf16").bytes);
    // NaN payloads may differ; everything else must be the same bits
    const nan = (h: number, exp: number, man: number) => (h & exp) === exp && (h & man) !== 0;
    bf.forEach((h, i) => (nan(h, 0x7f80, 0x7f) ? expect(nan(torchBf[i], 0x7f80, 0x7f)).toBe(true) : expect(h).toBe(torchBf[i])));
    const half = floatToFloat16(src);
    const torchHalf = bits(get("as_f16").bytes);
    half.forEach((h, i) => (nan(h, 0x7c00, 0x3ff) ? expect(nan(torchHalf[i], 0x7c00, 0x3ff)).toBe(true) : expect(h).toBe(torchHalf[i])));
  });

  test("bf16 and f16 widen to exactly torch's float32", () => {
    // as plain arrays: bun's typed-array equality counts NaN as unequal to itself
    expect([...toFloat32(get("as_bf16"))]).toEqual([...toFloat32(get("bf16_widened"))]);
    expect([...toFloat32(get("as_f16"))]).toEqual([...toFloat32(get("f16_widened"))]);
  });
});

describe("HF weight folders", () => {
  test("a BF16 checkpoint in three shards with its index (written by torch) loads as the bf16-rounded model", async () => {
    const sharded = await loadHFModel(SHARDED_BF16);
    const original = await loadHFModel(GPT2);
    expect(sharded.dtype).toBe("BF16");
    expect(original.dtype).toBe("F32");
    expect(sharded.params).toEqual(throughBf16(original.params));
  });

  test("save in bf16, sharded → load gives the same values; index lists every tensor once with the total size", async () => {
    const model = await loadHFModel(GPT2);
    const out = join(temp, "bf16");
    await saveHFModel(out, model, {}, { dtype: "BF16", maxShardBytes: 64_000 });
    const files = readdirSync(out).sort();
    expect(files).toContain(WEIGHTS_INDEX_FILE);
    expect(files).not.toContain("model.safetensors");
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(2);
    const index = await Bun.file(join(out, WEIGHTS_INDEX_FILE)).json();
    expect(Object.keys(index.weight_map).length).toBe(model.layout.tensors.length);
    expect(index.metadata.total_size).toBe(model.layout.count * 2);
    for (const shard of shards) {
      const file = await readSafetensorsFile(join(out, shard));
      expect(file.metadata.format).toBe("pt");
      for (const entry of file.tensors.values()) expect(entry.dtype).toBe("BF16");
    }
    expect((await Bun.file(join(out, "config.json")).json()).torch_dtype).toBe("bfloat16");
    const again = await loadHFModel(out);
    expect(again.params).toEqual(throughBf16(model.params));
    expect(again.dtype).toBe("BF16");
    // saving again in one file replaces the shards: the folder never holds both forms
    await saveHFModel(out, again, {}, { dtype: "F16" });
    expect(readdirSync(out).filter((f) => f.endsWith(".safetensors") || f.endsWith(".json")).sort()).toEqual(["config.json", "model.safetensors"]);
    expect((await loadHFModel(out)).dtype).toBe("F16");
  });

  test("untied (Llama) and tied (Qwen2) heads: saved in bf16 shards under HF names, reloaded as the bf16-rounded model", async () => {
    for (const [family, tied] of [["llama", false], ["qwen2", true]] as const) {
      const dir = join(FIXTURES, "families", family);
      const model = await loadHFModel(dir);
      expect(model.config.arch.tiedHead).toBe(tied);
      const out = join(temp, `${family}-bf16`);
      await saveHFModel(out, model, {}, { dtype: "BF16", maxShardBytes: 8_000 });
      const index = await Bun.file(join(out, WEIGHTS_INDEX_FILE)).json();
      const stored = await readWeights(dir);
      // exactly the source checkpoint's tensor names: lm_head.weight only when the head is untied
      expect(Object.keys(index.weight_map).sort()).toEqual([...stored.keys()].sort());
      expect("lm_head.weight" in index.weight_map).toBe(!tied);
      expect(index.weight_map["model.layers.1.self_attn.k_proj.weight"]).toMatch(/^model-\d{5}-of-\d{5}\.safetensors$/);
      const config = await Bun.file(join(out, "config.json")).json();
      expect(config).toMatchObject({ model_type: family, tie_word_embeddings: tied, torch_dtype: "bfloat16" });
      const again = await loadHFModel(out);
      expect(again.config.family).toBe(family);
      expect(again.params).toEqual(throughBf16(model.params));
    }
  });

  test("f32 save stays bit-exact; a tensor bigger than a shard gets its own shard", async () => {
    const tensors = [
      { name: "a", shape: [4], data: new Float32Array([1, 2, 3, 4]) },
      { name: "big", shape: [100], data: Float32Array.from({ length: 100 }, (_, i) => i / 7) },
      { name: "c", shape: [2], data: new Float32Array([-1, 0.1]) },
    ];
    const out = join(temp, "shards");
    const written = await writeWeights(out, tensors, { maxShardBytes: 100 });
    expect(written.length).toBe(4); // index + 3 shards
    const read = await readWeights(out);
    for (const t of tensors) expect(read.get(t.name)!.data).toEqual(t.data);
  });

  test("broken shard sets are one clear error", async () => {
    const dir = join(temp, "broken");
    cpSync(SHARDED_BF16, dir, { recursive: true });
    rmSync(join(dir, "model-00002-of-00003.safetensors"));
    expect(loadHFModel(dir)).rejects.toThrow(/shard model-00002-of-00003.safetensors is missing/);
    const lying = join(temp, "lying");
    cpSync(SHARDED_BF16, lying, { recursive: true });
    const index = await Bun.file(join(lying, WEIGHTS_INDEX_FILE)).json();
    index.weight_map["transformer.extra.weight"] = "model-00001-of-00003.safetensors";
    writeFileSync(join(lying, WEIGHTS_INDEX_FILE), JSON.stringify(index));
    expect(loadHFModel(lying)).rejects.toThrow(/tensor transformer.extra.weight is not in model-00001-of-00003.safetensors/);
    const torchOnly = join(temp, "torch-only");
    cpSync(GPT2, torchOnly, { recursive: true });
    rmSync(join(torchOnly, "model.safetensors"));
    writeFileSync(join(torchOnly, "pytorch_model.bin"), "");
    expect(loadHFModel(torchOnly)).rejects.toThrow(/only pytorch_model.bin/);
    expect(existsSync(join(torchOnly, "config.json"))).toBe(true);
  });
});
