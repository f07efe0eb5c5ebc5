import { describe, expect, test } from "bun:test";
import { configFromHF, configToHF, familyTensors, parameterCount, rotaryDim } from "../../src/model/family.ts";
import { paramLayout, PARAM_ALIGNMENT } from "../../src/model/params.ts";
import { initParams } from "../../src/model/init.ts";
import { tensorView } from "../../src/model/params.ts";

// Real configs (abridged to the keys that matter), with their published parameter counts.
const LLAMA_3_2_1B = {
  model_type: "llama", hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16, num_attention_heads: 32, num_key_value_heads: 8,
  head_dim: 64, vocab_size: 128256, max_position_embeddings: 131072, rms_norm_eps: 1e-5, rope_theta: 500000, hidden_act: "silu",
  rope_scaling: { factor: 32, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 8192, rope_type: "llama3" },
  tie_word_embeddings: true, bos_token_id: 128000,
};
const QWEN2_5_0_5B = {
  model_type: "qwen2", hidden_size: 896, intermediate_size: 4864, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2,
  vocab_size: 151936, max_position_embeddings: 32768, rms_norm_eps: 1e-6, rope_theta: 1e6, tie_word_embeddings: true, hidden_act: "silu",
  sliding_window: 32768, use_sliding_window: false,
};
const GEMMA_2B = {
  model_type: "gemma", hidden_size: 2048, intermediate_size: 16384, num_hidden_layers: 18, num_attention_heads: 8, num_key_value_heads: 1,
  head_dim: 256, vocab_size: 256000, max_position_embeddings: 8192, rms_norm_eps: 1e-6, hidden_act: "gelu",
};
const PHI_1_5 = {
  model_type: "phi", hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 24, num_attention_heads: 32, vocab_size: 51200,
  max_position_embeddings: 2048, layer_norm_eps: 1e-5, partial_rotary_factor: 0.5, hidden_act: "gelu_new",
};
const GEMMA_2_2B = {
  model_type: "gemma2", hidden_size: 2304, intermediate_size: 9216, num_hidden_layers: 26, num_attention_heads: 8, num_key_value_heads: 4,
  head_dim: 256, vocab_size: 256000, max_position_embeddings: 8192, rms_norm_eps: 1e-6, query_pre_attn_scalar: 256,
  attn_logit_softcapping: 50.0, final_logit_softcapping: 30.0, sliding_window: 4096, hidden_activation: "gelu_pytorch_tanh",
};
const QWEN3 = { ...QWEN2_5_0_5B, model_type: "qwen3", head_dim: 128, num_attention_heads: 16, num_key_value_heads: 8, hidden_size: 1024, intermediate_size: 3072, num_hidden_layers: 28 };

describe("config.json of each family", () => {
  test("published parameter counts: Llama 3.2 1B, Qwen2.5 0.5B, Gemma 2B, Phi-1.5, Gemma 2 2B", () => {
    expect(parameterCount(configFromHF(LLAMA_3_2_1B))).toBe(1_235_814_400);
    expect(parameterCount(configFromHF(QWEN2_5_0_5B))).toBe(494_032_768);
    expect(parameterCount(configFromHF(GEMMA_2B))).toBe(2_506_172_416);
    expect(parameterCount(configFromHF(PHI_1_5))).toBe(1_418_270_720);
    expect(parameterCount(configFromHF(GEMMA_2_2B))).toBe(2_614_341_888);
  });

  test("each family's description", () => {
    const llama = configFromHF(LLAMA_3_2_1B);
    expect(llama.arch).toMatchObject({ norm: "rms", mlp: "swiglu", tiedHead: true, qkvBias: false, weightLayout: "linear" });
    expect(llama.arch.positions).toEqual({ kind: "rotary", theta: 500000, fraction: 1, scaling: { type: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } });
    expect([llama.nHead, llama.nKVHead, llama.headDim]).toEqual([32, 8, 64]);
    expect(configFromHF(QWEN2_5_0_5B).arch).toMatchObject({ qkvBias: true, outBias: false });
    expect(configFromHF(QWEN3).arch).toMatchObject({ qkNorm: true, qkvBias: false });
    const gemma = configFromHF(GEMMA_2B);
    expect(gemma.arch).toMatchObject({ norm: "rms1p", mlp: "geglu", tiedHead: true, embeddingScale: Math.sqrt(2048) });
    expect([gemma.nKVHead, gemma.headDim]).toEqual([1, 256]);
    const gemma2 = configFromHF(GEMMA_2_2B);
    expect(gemma2.arch).toMatchObject({ norm: "rms1p", sandwichNorms: true, attentionScale: 1 / 16, attentionSoftcap: 50, logitSoftcap: 30 });
    expect(gemma2.nPositions).toBe(4096); // sequences up to the sliding window, where it equals full attention
    expect(configToHF(gemma2)).toMatchObject({ max_position_embeddings: 8192, sliding_window: 4096, query_pre_attn_scalar: 256 });
    const phi = configFromHF(PHI_1_5);
    expect(phi.arch).toMatchObject({ norm: "layer", block: "parallel", tiedHead: false, headBias: true, mlp: "gelu" });
    expect(rotaryDim(phi)).toBe(32);
    expect(configFromHF({ ...LLAMA_3_2_1B, model_type: "mistral", sliding_window: null }).family).toBe("llama");
  });

  test("what the graph does not implement is refused with one line naming it", () => {
    const refused: [object, RegExp][] = [
      [{ ...LLAMA_3_2_1B, model_type: "falcon" }, /model_type "falcon" is not supported \(supported: gpt2, llama, mistral, qwen2, qwen3, gemma, gemma2, phi\)/],
      [{ ...LLAMA_3_2_1B, model_type: "mixtral" }, /model_type "mixtral" is not supported \(mixture of experts\)/],
      [{ ...LLAMA_3_2_1B, model_type: "gemma3" }, /model_type "gemma3" is not supported \(Gemma 3: sliding-window attention, q\/k norms, pre- and post-norms\)/],
      [{ ...GEMMA_2B, attn_logit_softcapping: 50 }, /logit soft-capping on a Gemma 1 config is not supported/],
      [{ ...LLAMA_3_2_1B, num_local_experts: 8 }, /mixture of experts \(num_local_experts = 8\) is not supported/],
      [{ ...LLAMA_3_2_1B, model_type: "mistral", sliding_window: 4096 }, /sliding window attention \(sliding_window = 4096\) is not supported/],
      [{ ...QWEN2_5_0_5B, use_sliding_window: true }, /sliding window attention \(use_sliding_window = true\) is not supported/],
      [{ ...LLAMA_3_2_1B, rope_scaling: { rope_type: "yarn", factor: 4 } }, /rope_scaling type "yarn" is not supported/],
      [{ ...LLAMA_3_2_1B, hidden_act: "gelu" }, /hidden_act "gelu" is not supported for llama/],
      [{ ...PHI_1_5, qk_layernorm: true }, /qk_layernorm = true is not supported/],
      [{ ...GEMMA_2B, hidden_activation: "gelu" }, /hidden_activation "gelu" is not supported/],
      [{ ...LLAMA_3_2_1B, num_key_value_heads: 5 }, /nHead \(32\) must be a multiple of nKVHead \(5\)/],
      [{ ...PHI_1_5, partial_rotary_factor: 0.01 }, /rotary dimensions \(0 of head_dim 64\)/],
    ];
    for (const [config, message] of refused) {
      expect(() => configFromHF(config, "m/config.json")).toThrow(message);
      try {
        configFromHF(config, "m/config.json");
      } catch (err) {
        expect((err as Error).message.startsWith("m/config.json: ")).toBe(true);
        expect((err as Error).message).not.toContain("\n");
      }
    }
  });

  test("config.json round trip keeps the description and the keys it does not own", () => {
    for (const hf of [LLAMA_3_2_1B, QWEN2_5_0_5B, QWEN3, GEMMA_2B, GEMMA_2_2B, PHI_1_5]) {
      const config = configFromHF(hf);
      const written = configToHF(config);
      expect({ ...configFromHF(written), source: undefined }).toEqual({ ...config, source: undefined });
    }
    expect(configToHF(configFromHF(LLAMA_3_2_1B)).bos_token_id).toBe(128000);
  });
});

describe("tensors", () => {
  const small = configFromHF({ ...QWEN3, hidden_size: 32, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 12, vocab_size: 50, tie_word_embeddings: false });

  test("HF names and nn.Linear shapes; q/k/v and gate/up are one slot each, parts back to back", () => {
    const slots = familyTensors(small);
    const qkv = slots.find((s) => s.role === "qkv.weight" && s.layer === 1)!;
    expect(qkv.parts.map((p) => [p.name, p.shape])).toEqual([
      ["model.layers.1.self_attn.q_proj.weight", [48, 32]],
      ["model.layers.1.self_attn.k_proj.weight", [24, 32]],
      ["model.layers.1.self_attn.v_proj.weight", [24, 32]],
    ]);
    expect(qkv.shape).toEqual([96, 32]);
    expect(slots.find((s) => s.role === "qNorm.weight")!.parts[0]).toEqual({ name: "model.layers.0.self_attn.q_norm.weight", shape: [12] });
    expect(slots.find((s) => s.role === "head.weight")!.parts[0]).toEqual({ name: "lm_head.weight", shape: [50, 32] });
    const layout = paramLayout(small);
    const fc = layout.layers[0]["fc.weight"]!;
    expect(fc.parts[1].offset).toBe(fc.parts[0].offset + 24 * 32);
    for (const slot of layout.slots) expect(slot.offset % PARAM_ALIGNMENT).toBe(0);
    expect(layout.count).toBe(parameterCount(small));
  });

  test("init: Gemma's (1 + w) gains start at 0, RMSNorm gains at 1, residual projections scaled", () => {
    const gemma = configFromHF({ ...GEMMA_2B, hidden_size: 16, intermediate_size: 8, num_hidden_layers: 2, num_attention_heads: 2, head_dim: 4, vocab_size: 10 });
    const g = paramLayout(gemma);
    expect(tensorView(initParams(g, 1), g.layers[0]["norm1.weight"]!).every((x) => x === 0)).toBe(true);
    const q = paramLayout(small);
    const params = initParams(q, 1);
    expect(tensorView(params, q.layers[1]["kNorm.weight"]!).every((x) => x === 1)).toBe(true);
  });
});
