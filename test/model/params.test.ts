import { describe, expect, test } from "bun:test";
import { gpt2Config, parameterCount, presetConfig } from "../../src/model/config.ts";
import { PARAM_ALIGNMENT, paramLayout, tensorView } from "../../src/model/params.ts";
import { initParams } from "../../src/model/init.ts";

const config = gpt2Config({ nLayer: 2, nHead: 2, nEmbd: 12, vocabSize: 11, nPositions: 7, layerNormEps: 1e-5 });

describe("params layout", () => {
  test("HF names and Conv1D shapes, lm_head tied (absent)", () => {
    const layout = paramLayout(config);
    expect(layout.byName.get("transformer.h.1.attn.c_attn.weight")!.shape).toEqual([12, 36]);
    expect(layout.byName.get("transformer.h.0.mlp.c_proj.weight")!.shape).toEqual([48, 12]);
    expect(layout.byName.get("transformer.wpe.weight")!.shape).toEqual([7, 12]);
    expect(layout.byName.has("lm_head.weight")).toBe(false);
    expect(layout.tensors.length).toBe(2 + 12 * 2 + 2);
    expect(layout.count).toBe(parameterCount(config));
    expect(layout.layers[1]["fc.weight"]!.parts).toEqual([layout.byName.get("transformer.h.1.mlp.c_fc.weight")!]);
  });

  test("aligned, non-overlapping offsets; decayed tensors first, exactly the 2-D ones", () => {
    const layout = paramLayout(presetConfig("micro"));
    let end = 0;
    for (const t of layout.tensors) {
      expect(t.offset % PARAM_ALIGNMENT).toBe(0);
      expect(t.offset).toBeGreaterThanOrEqual(end);
      end = t.offset + t.size;
      expect(t.decay).toBe(t.shape.length === 2);
      expect(t.offset < layout.decayEnd).toBe(t.decay);
    }
    expect(layout.size).toBeGreaterThanOrEqual(end);
    expect(layout.size % PARAM_ALIGNMENT).toBe(0);
    expect(layout.decayEnd % PARAM_ALIGNMENT).toBe(0);
  });
});

describe("init", () => {
  test("seeded, GPT-2 statistics, zero padding", () => {
    const layout = paramLayout(presetConfig("micro"));
    const a = initParams(layout, 7);
    expect(initParams(layout, 7)).toEqual(a);
    expect(initParams(layout, 8)).not.toEqual(a);
    const std = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
    expect(std(tensorView(a, layout.wte))).toBeCloseTo(0.02, 3);
    expect(std(tensorView(a, layout.layers[0]["proj.weight"]!))).toBeCloseTo(0.02 / Math.sqrt(4), 3);
    expect(std(tensorView(a, layout.layers[1]["o.weight"]!))).toBeCloseTo(0.02 / Math.sqrt(4), 2);
    expect(tensorView(a, layout.layers[0]["norm1.weight"]!).every((x) => x === 1)).toBe(true);
    expect(tensorView(a, layout.global["normF.bias"]!).every((x) => x === 0)).toBe(true);
    expect(tensorView(a, layout.layers[0]["qkv.bias"]!).every((x) => x === 0)).toBe(true);
    const inTensor = new Uint8Array(layout.size);
    for (const t of layout.tensors) inTensor.fill(1, t.offset, t.offset + t.size);
    expect(a.every((x, i) => inTensor[i] === 1 || x === 0)).toBe(true);
  });
});
