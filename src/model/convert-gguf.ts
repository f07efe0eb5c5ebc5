/**
 * A llama.cpp GGUF Llama (e.g. models/stories260k, karpathy's llama2.c stories260K converted by llama.cpp's llama2c
 * tool) → a Hugging Face Llama folder: config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
 * generation_config.json, which `transformers` (LlamaForCausalLM, AutoTokenizer) and this trainer load.
 *
 * Two conventions differ:
 * - Rotary pairs. llama2.c and GGUF rotate adjacent pairs (q[2i], q[2i+1]) with frequency i; HF's Llama rotates
 *   halves (q[i], q[i + head_dim/2]). So the rows of wq and wk are permuted per head, exactly as transformers'
 *   convert_llama_weights_to_hf.py does: w.view(heads, head_dim/2, 2, in).transpose(1, 2).reshape(out, in).
 *   Then HF's rotate-half on the permuted rows computes what llama2.c computes on the original ones (checked against
 *   a float64 run.c forward in test/fixtures/stories260k/reference.py).
 * - Tokenizer. GGUF carries SentencePiece's pieces, scores and types; HF's tokenizer.json for a SentencePiece BPE
 *   is a BPE model with byte fallback whose merges are every split (left, right) of every piece, ordered by the
 *   piece's score (transformers' SentencePieceExtractor), with "▁" prepended and spaces replaced by "▁" as
 *   SentencePiece's add_dummy_prefix does, and <s> put before every text.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { GgufFile, GgufTensor, GgufValue } from "./gguf.ts";
import { writeWeights } from "./hf-weights.ts";
import type { TensorToWrite } from "./safetensors.ts";

/** HF's permute for q/k rows: interleaved rotary pairs → rotate-half halves, per head. */
export function permuteRotary(w: Float32Array, heads: number, rows: number, cols: number): Float32Array {
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let which = 0; which < 2; which++) {
        const from = (h * headDim + 2 * j + which) * cols;
        const to = (h * headDim + which * half + j) * cols;
        out.set(w.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}

const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;

export interface ConvertedFolder {
  config: Record<string, unknown>;
  tensors: TensorToWrite[];
  tokenizer: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
}

function metaNumber(gguf: GgufFile, key: string, fallback?: number): number {
  const value = gguf.metadata.get(key) ?? fallback;
  if (typeof value !== "number" && typeof value !== "bigint") throw new UserError(`GGUF: metadata ${key} is missing or not a number`, 422);
  return Number(value);
}

function metaArray(gguf: GgufFile, key: string): GgufValue[] {
  const value = gguf.metadata.get(key);
  if (!Array.isArray(value)) throw new UserError(`GGUF: metadata ${key} is missing`, 422);
  return value;
}

/** The HF tokenizer.json of a GGUF SentencePiece ("llama") vocabulary. */
export function sentencePieceTokenizer(gguf: GgufFile): { tokenizer: Record<string, unknown>; bos: number; eos: number; unk: number } {
  const model = gguf.metadata.get("tokenizer.ggml.model");
  if (model !== "llama") throw new UserError(`GGUF: tokenizer.ggml.model ${JSON.stringify(model)} is not converted (only llama, SentencePiece)`, 422);
  const tokens = metaArray(gguf, "tokenizer.ggml.tokens") as string[];
  const scores = metaArray(gguf, "tokenizer.ggml.scores") as number[];
  const types = metaArray(gguf, "tokenizer.ggml.token_type") as number[];
  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => (vocab[t] = id));
  // every split of every ordinary piece whose halves are pieces, by the piece's score (stable), then by the halves' ids
  const merges: { left: string; right: string; score: number }[] = [];
  const ordinary = (t: string) => vocab[t] !== undefined && types[vocab[t]] === TOKEN_NORMAL;
  const byScore = tokens.map((t, id) => ({ t, id })).filter(({ id }) => types[id] === TOKEN_NORMAL).sort((a, b) => scores[b.id] - scores[a.id]);
  for (const { t, id } of byScore) {
    const chars = Array.from(t);
    const local: { left: string; right: string; score: number }[] = [];
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join("");
      const right = chars.slice(i).join("");
      if (ordinary(left) && ordinary(right)) local.push({ left, right, score: scores[id] });
    }
    local.sort((a, b) => vocab[a.left] - vocab[b.left] || vocab[a.right] - vocab[b.right]);
    merges.push(...local);
  }
  const bos = metaNumber(gguf, "tokenizer.ggml.bos_token_id", 1);
  const eos = metaNumber(gguf, "tokenizer.ggml.eos_token_id", 2);
  const unk = metaNumber(gguf, "tokenizer.ggml.unknown_token_id", 0);
  const special = (id: number) => ({ id, content: tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const specialIds = tokens.map((_, id) => id).filter((id) => types[id] === TOKEN_CONTROL || types[id] === TOKEN_UNKNOWN);
  if (!types.some((t) => t === TOKEN_BYTE)) throw new UserError("GGUF: the vocabulary has no byte tokens (<0x00>…); only byte-fallback SentencePiece is converted", 422);
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specialIds.map(special),
    normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "▁" }, { type: "Replace", pattern: { String: " " }, content: "▁" }] },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: tokens[bos], type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: tokens[bos], type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: tokens[bos], type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { [tokens[bos]]: { id: tokens[bos], ids: [bos], tokens: [tokens[bos]] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [{ type: "Replace", pattern: { String: "▁" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
    },
    model: {
      type: "BPE", dropout: null, unk_token: tokens[unk], continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges: merges.map((m) => [m.left, m.right]),
    },
  };
  return { tokenizer, bos, eos, unk };
}

/** The HF Llama folder's contents for a GGUF Llama (F32/F16 tensors). */
export function ggufLlamaToHF(gguf: GgufFile): ConvertedFolder {
  const arch = gguf.metadata.get("general.architecture");
  if (arch !== "llama") throw new UserError(`GGUF: general.architecture ${JSON.stringify(arch)} is not converted (only llama)`, 422);
  const n = (key: string, fallback?: number) => metaNumber(gguf, `llama.${key}`, fallback);
  const hidden = n("embedding_length");
  const heads = n("attention.head_count");
  const kvHeads = n("attention.head_count_kv", heads);
  const layers = n("block_count");
  const headDim = hidden / heads;
  if (n("rope.dimension_count", headDim) !== headDim) throw new UserError("GGUF: partial rotary (rope.dimension_count < head size) is not converted", 422);
  const tensor = (name: string): GgufTensor => {
    const t = gguf.tensors.get(name);
    if (!t) throw new UserError(`GGUF: tensor ${name} is missing`, 422);
    return t;
  };
  const embed = tensor("token_embd.weight");
  const output = gguf.tensors.get("output.weight");
  // llama2.c's converter writes the classifier even when it is the embedding table: tied then
  const tied = !output || (output.data.length === embed.data.length && output.data.every((x, i) => x === embed.data[i]));
  const tensors: TensorToWrite[] = [{ name: "model.embed_tokens.weight", shape: embed.shape, data: embed.data }];
  for (let l = 0; l < layers; l++) {
    const t = (g: string) => tensor(`blk.${l}.${g}.weight`);
    const hf = (suffix: string, source: GgufTensor, data = source.data) => tensors.push({ name: `model.layers.${l}.${suffix}.weight`, shape: source.shape, data });
    const q = t("attn_q");
    const k = t("attn_k");
    hf("input_layernorm", t("attn_norm"));
    hf("self_attn.q_proj", q, permuteRotary(q.data, heads, q.shape[0], q.shape[1]));
    hf("self_attn.k_proj", k, permuteRotary(k.data, kvHeads, k.shape[0], k.shape[1]));
    hf("self_attn.v_proj", t("attn_v"));
    hf("self_attn.o_proj", t("attn_output"));
    hf("post_attention_layernorm", t("ffn_norm"));
    hf("mlp.gate_proj", t("ffn_gate"));
    hf("mlp.up_proj", t("ffn_up"));
    hf("mlp.down_proj", t("ffn_down"));
  }
  const norm = tensor("output_norm.weight");
  tensors.push({ name: "model.norm.weight", shape: norm.shape, data: norm.data });
  if (!tied) tensors.push({ name: "lm_head.weight", shape: output!.shape, data: output!.data });
  const { tokenizer, bos, eos } = sentencePieceTokenizer(gguf);
  const vocabSize = embed.shape[0];
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: hidden,
    intermediate_size: n("feed_forward_length"),
    num_hidden_layers: layers,
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    vocab_size: vocabSize,
    max_position_embeddings: n("context_length"),
    rms_norm_eps: n("attention.layer_norm_rms_epsilon", 1e-5),
    rope_theta: n("rope.freq_base", 10000),
    rope_scaling: null,
    hidden_act: "silu",
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: tied,
    bos_token_id: bos,
    eos_token_id: eos,
    torch_dtype: "float32",
  };
  const tokens = metaArray(gguf, "tokenizer.ggml.tokens") as string[];
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: tokens[bos],
    eos_token: tokens[eos],
    unk_token: tokens[metaNumber(gguf, "tokenizer.ggml.unknown_token_id", 0)],
    pad_token: null,
    clean_up_tokenization_spaces: false,
    legacy: false,
    model_max_length: config.max_position_embeddings,
    tokenizer_class: "LlamaTokenizer",
  };
  return { config, tensors, tokenizer, tokenizerConfig, generationConfig: { bos_token_id: bos, eos_token_id: eos } };
}

/** Writes the converted folder. */
export async function writeConvertedFolder(dir: string, folder: ConvertedFolder): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeWeights(dir, folder.tensors);
  const json = (name: string, value: unknown) => Bun.write(join(dir, name), JSON.stringify(value, null, 2) + "\n");
  await json("config.json", folder.config);
  await json("tokenizer.json", folder.tokenizer);
  await json("tokenizer_config.json", folder.tokenizerConfig);
  await json("generation_config.json", folder.generationConfig);
}
