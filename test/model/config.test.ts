import { describe, expect, test } from "bun:test";
import { configFromHF, configToHF, parameterCount, presetConfig, validateConfig } from "../../src/model/config.ts";
import { UserError } from "../../src/errors.ts";

describe("config", () => {
  test("the gpt2 preset has GPT-2 small's 124,439,808 parameters", () => {
    expect(parameterCount(presetConfig("gpt2"))).toBe(124_439_808);
    expect(parameterCount(presetConfig("gpt2-medium"))).toBe(354_823_168);
  });

  test("presets accept overrides and unknown names are a UserError listing the known ones", () => {
    expect(presetConfig("tiny", { vocabSize: 500 }).vocabSize).toBe(500);
    expect(() => presetConfig("huge")).toThrow(/unknown model size "huge" \(known: gpt2, .*tiny.*\)/);
  });

  test("validation names the bad field", () => {
    const good = presetConfig("micro");
    expect(() => validateConfig({ ...good, nHead: 3 })).toThrow("nEmbd (64) must be divisible by nHead (3)");
    expect(() => validateConfig({ ...good, nLayer: 0 })).toThrow("nLayer must be a positive integer, got 0");
    expect(() => validateConfig({ ...good, layerNormEps: 0 })).toThrow(UserError);
  });

  test("HF config.json round trip, n_ctx accepted for n_positions", () => {
    const config = presetConfig("tiny");
    expect({ ...configFromHF(configToHF(config)), source: undefined }).toEqual({ ...config, source: undefined });
    const { n_positions, ...old } = configToHF(config);
    expect(configFromHF({ ...old, n_ctx: 77 }).nPositions).toBe(77);
  });

  test("architecture variants are refused with a clear message", () => {
    const hf = configToHF(presetConfig("micro"));
    expect(() => configFromHF({ ...hf, n_inner: 100 }, "m/config.json")).toThrow("m/config.json: n_inner 100 is not supported (only null or 4·n_embd = 256)");
    expect(() => configFromHF({ ...hf, activation_function: "relu" })).toThrow(/activation_function "relu" is not supported/);
    expect(() => configFromHF({ ...hf, n_head: "4" })).toThrow(/n_head must be an integer/);
    expect(() => configFromHF({ ...hf, n_head: 5 })).toThrow(/divisible by nHead/);
    expect(() => configFromHF({ ...hf, model_type: "falcon" })).toThrow('model_type "falcon" is not supported (supported: gpt2, llama, mistral, qwen2, qwen3, gemma, gemma2, phi)');
  });
});
