import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hubCacheDir, loadHFModel, loadPretrained, resolveModelDir, saveHFModel } from "../../src/model/hf.ts";
import { tensorView } from "../../src/model/params.ts";
import { parseSafetensors, readSafetensorsFile, serializeSafetensors, toFloat32 } from "../../src/model/safetensors.ts";
import { UserError } from "../../src/errors.ts";

const FIXTURE = join(import.meta.dir, "../fixtures/tiny-random-gpt2");
const temp = mkdtempSync(join(tmpdir(), "cot-hf-"));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

/** A copy of the fixture folder whose weights file is rewritten by `edit` (tensor name → data, or deleted). */
async function editedFixture(name: string, edit: (tensors: Map<string, { shape: number[]; data: Float32Array }>) => void): Promise<string> {
  const dir = join(temp, name);
  cpSync(FIXTURE, dir, { recursive: true });
  const file = await readSafetensorsFile(join(FIXTURE, "model.safetensors"));
  const tensors = new Map([...file.tensors].map(([n, e]) => [n, { shape: e.shape, data: toFloat32(e) }]));
  edit(tensors);
  writeFileSync(join(dir, "model.safetensors"), serializeSafetensors([...tensors].map(([n, t]) => ({ name: n, ...t })), { format: "pt" }));
  return dir;
}

describe("HF GPT-2 folders", () => {
  test("loads tiny-random-gpt2 with every tensor where the layout says", async () => {
    const model = await loadHFModel(FIXTURE);
    expect(model.config).toMatchObject({ family: "gpt2", nLayer: 5, nHead: 4, nEmbd: 32, vocabSize: 1000, nPositions: 512, layerNormEps: 1e-5 });
    expect(model.layout.count).toBe(111_968);
    const file = await readSafetensorsFile(join(FIXTURE, "model.safetensors"));
    for (const [name, entry] of file.tensors) expect(tensorView(model.params, model.layout.byName.get(name)!)).toEqual(toFloat32(entry));
  });

  test("save → load round trip is bit-exact and writes HF names, Conv1D shapes and format=pt", async () => {
    const model = await loadHFModel(FIXTURE);
    const out = join(temp, "saved");
    await saveHFModel(out, model);
    const again = await loadHFModel(out);
    expect({ ...again.config, source: undefined }).toEqual({ ...model.config, source: undefined });
    expect(again.params).toEqual(model.params);
    const file = parseSafetensors(new Uint8Array(await Bun.file(join(out, "model.safetensors")).arrayBuffer()));
    expect(file.metadata.format).toBe("pt");
    expect(file.tensors.get("transformer.h.4.mlp.c_fc.weight")!.shape).toEqual([32, 128]);
    expect(file.tensors.has("lm_head.weight")).toBe(false);
    const config = await Bun.file(join(out, "config.json")).json();
    expect(config).toMatchObject({ model_type: "gpt2", n_layer: 5, n_embd: 32, vocab_size: 1000, activation_function: "gelu_new" });
  });

  test("names without the transformer. prefix, a tied lm_head and attn.bias buffers are accepted", async () => {
    const dir = await editedFixture("variant", (tensors) => {
      for (const [name, t] of [...tensors]) {
        tensors.delete(name);
        tensors.set(name.replace("transformer.", ""), t);
      }
      tensors.set("lm_head.weight", tensors.get("wte.weight")!);
      tensors.set("h.0.attn.bias", { shape: [1, 1, 4, 4], data: new Float32Array(16) });
    });
    expect((await loadHFModel(dir)).params).toEqual((await loadHFModel(FIXTURE)).params);
  });

  test("a missing tensor is named; a mis-shaped one shows both shapes; an untied head is refused", async () => {
    const missing = await editedFixture("missing", (t) => t.delete("transformer.h.3.ln_2.bias"));
    await expect(loadHFModel(missing)).rejects.toThrow(/missing tensor transformer\.h\.3\.ln_2\.bias/);
    const misshaped = await editedFixture("misshaped", (t) => t.set("transformer.h.1.attn.c_proj.weight", { shape: [16, 64], data: new Float32Array(1024) }));
    await expect(loadHFModel(misshaped)).rejects.toThrow("tensor transformer.h.1.attn.c_proj.weight has shape [16, 64], expected [32, 32]");
    const untied = await editedFixture("untied", (t) => t.set("lm_head.weight", { shape: [1000, 32], data: new Float32Array(32000) }));
    await expect(loadHFModel(untied)).rejects.toThrow(/lm_head.weight differs/);
    await expect(loadHFModel(join(temp, "nowhere"))).rejects.toBeInstanceOf(UserError);
  });

  test("resolves repo ids in a fake hub cache (HF_HUB_CACHE, HF_HOME, refs/main, gpt2 alias)", async () => {
    const home = join(temp, "hf-home");
    const snapshot = (repo: string, rev: string) => {
      const dir = join(home, "hub", `models--${repo.replace("/", "--")}`, "snapshots", rev);
      mkdirSync(dir, { recursive: true });
      cpSync(FIXTURE, dir, { recursive: true });
      return dir;
    };
    const old = snapshot("org/tiny", "aaa");
    const main = snapshot("org/tiny", "bbb");
    mkdirSync(join(home, "hub", "models--org--tiny", "refs"), { recursive: true });
    writeFileSync(join(home, "hub", "models--org--tiny", "refs", "main"), "aaa\n");
    const gpt2 = snapshot("openai-community/gpt2", "ccc");
    expect(hubCacheDir({ HF_HOME: home })).toBe(join(home, "hub"));
    expect(hubCacheDir({ HF_HUB_CACHE: "/x", HF_HOME: home })).toBe("/x");
    expect(resolveModelDir("org/tiny", { HF_HOME: home })).toBe(old);
    expect(resolveModelDir("org/tiny", { HF_HUB_CACHE: join(home, "hub") })).toBe(old);
    expect(main).not.toBe(old);
    expect(resolveModelDir("gpt2", { HF_HOME: home })).toBe(gpt2);
    expect(resolveModelDir(FIXTURE, {})).toBe(FIXTURE);
    expect(() => resolveModelDir("org/absent", { HF_HOME: home })).toThrow(/neither a model folder nor in the Hugging Face cache \(looked in .*models--org--absent\/snapshots/);
    const loaded = await loadPretrained("org/tiny", { HF_HOME: home });
    expect(loaded.dir).toBe(old);
    expect(loaded.layout.count).toBe(111_968);
  });
});

describe("HF folders of the other families", () => {
  const FAMILIES_DIR = join(import.meta.dir, "../fixtures/families");

  test.each([["llama"], ["qwen2"], ["qwen3"], ["gemma"], ["gemma2"], ["phi"]] as const)("%s: loads, saves back in the family's names and config keys, reloads bit-exact", async (family) => {
    const model = await loadHFModel(join(FAMILIES_DIR, family));
    expect(model.config.family).toBe(family);
    const stored = await readSafetensorsFile(join(FAMILIES_DIR, family, "model.safetensors"));
    expect(model.layout.tensors.map((t) => t.name).sort()).toEqual([...stored.tensors.keys()].sort());
    for (const spec of model.layout.tensors) expect(tensorView(model.params, spec)).toEqual(toFloat32(stored.tensors.get(spec.name)!));
    const out = join(temp, `saved-${family}`);
    await saveHFModel(out, model);
    const again = await loadHFModel(out);
    expect(again.params).toEqual(model.params);
    const original = await Bun.file(join(FAMILIES_DIR, family, "config.json")).json();
    expect(await Bun.file(join(out, "config.json")).json()).toMatchObject(original);
  });

  test("a tied Qwen2 may store lm_head equal to the embedding; an untied Llama needs its lm_head", async () => {
    const tied = join(temp, "qwen2-tied");
    cpSync(join(FAMILIES_DIR, "qwen2"), tied, { recursive: true });
    const file = await readSafetensorsFile(join(tied, "model.safetensors"));
    const tensors = [...file.tensors].map(([name, e]) => ({ name, shape: e.shape, data: toFloat32(e) }));
    const embedding = tensors.find((t) => t.name === "model.embed_tokens.weight")!;
    writeFileSync(join(tied, "model.safetensors"), serializeSafetensors([...tensors, { ...embedding, name: "lm_head.weight" }], { format: "pt" }));
    expect((await loadHFModel(tied)).params).toEqual((await loadHFModel(join(FAMILIES_DIR, "qwen2"))).params);

    const headless = join(temp, "llama-headless");
    cpSync(join(FAMILIES_DIR, "llama"), headless, { recursive: true });
    const llama = await readSafetensorsFile(join(headless, "model.safetensors"));
    const kept = [...llama.tensors].filter(([name]) => name !== "lm_head.weight").map(([name, e]) => ({ name, shape: e.shape, data: toFloat32(e) }));
    writeFileSync(join(headless, "model.safetensors"), serializeSafetensors(kept, { format: "pt" }));
    await expect(loadHFModel(headless)).rejects.toThrow(/missing tensor lm_head\.weight/);
  });
});
