/**
 * The parameter layout: every GPT-2 tensor, named as in Hugging Face's GPT2LMHeadModel, placed in ONE flat float
 * array (parameters, gradients and both AdamW moments each use the same layout).
 *
 * - Each tensor starts at a multiple of 64 floats (256 bytes, WebGPU's minStorageBufferOffsetAlignment), so a
 *   tensor can be bound on the GPU as a byte range of the one buffer. The gaps stay zero in every array.
 * - Weight decay (the `decay` flag) goes to the tensors that multiply activations — the 2-D matmul weights — and to
 *   the embeddings (wte is also the tied lm_head), as nanoGPT does with "every parameter of rank ≥ 2"; biases and
 *   LayerNorm gains/shifts are not decayed. All decayed tensors come first, so the optimizer runs over two contiguous
 *   ranges: [0, decayEnd) with weight decay and [decayEnd, size) without.
 * - Matmul weights keep HF's Conv1D layout [in, out], so y = x·W + b needs no transposes when loading or saving.
 * - lm_head.weight is not a tensor of its own: logits = x·wteᵀ.
 */
import type { GPT2Config } from "./config.ts";

export const PARAM_ALIGNMENT = 64;

export interface TensorSpec {
  /** HF name, e.g. "transformer.h.0.attn.c_attn.weight". */
  name: string;
  shape: number[];
  /** Element offset into the flat array (a multiple of PARAM_ALIGNMENT). */
  offset: number;
  /** Element count (product of shape). */
  size: number;
  decay: boolean;
}

/** The tensors of one transformer block, in the order the forward pass uses them. */
export interface LayerTensors {
  ln1Weight: TensorSpec;
  ln1Bias: TensorSpec;
  qkvWeight: TensorSpec;
  qkvBias: TensorSpec;
  attnProjWeight: TensorSpec;
  attnProjBias: TensorSpec;
  ln2Weight: TensorSpec;
  ln2Bias: TensorSpec;
  fcWeight: TensorSpec;
  fcBias: TensorSpec;
  fcProjWeight: TensorSpec;
  fcProjBias: TensorSpec;
}

export interface ParamLayout {
  config: GPT2Config;
  /** Decayed tensors first, then the rest; offsets increase along the list. */
  tensors: TensorSpec[];
  byName: Map<string, TensorSpec>;
  wte: TensorSpec;
  wpe: TensorSpec;
  layers: LayerTensors[];
  lnfWeight: TensorSpec;
  lnfBias: TensorSpec;
  /** End of the weight-decayed range (start of the rest); a multiple of PARAM_ALIGNMENT. */
  decayEnd: number;
  /** Total floats, padding included; a multiple of PARAM_ALIGNMENT. */
  size: number;
  /** Floats that are real parameters (padding excluded). */
  count: number;
}

type Shape = (c: GPT2Config) => number[];

/** Per-block tensors: HF suffix, shape, decayed or not, and the LayerTensors field it fills. */
const BLOCK: [suffix: string, shape: Shape, decay: boolean, field: keyof LayerTensors][] = [
  ["ln_1.weight", (c) => [c.nEmbd], false, "ln1Weight"],
  ["ln_1.bias", (c) => [c.nEmbd], false, "ln1Bias"],
  ["attn.c_attn.weight", (c) => [c.nEmbd, 3 * c.nEmbd], true, "qkvWeight"],
  ["attn.c_attn.bias", (c) => [3 * c.nEmbd], false, "qkvBias"],
  ["attn.c_proj.weight", (c) => [c.nEmbd, c.nEmbd], true, "attnProjWeight"],
  ["attn.c_proj.bias", (c) => [c.nEmbd], false, "attnProjBias"],
  ["ln_2.weight", (c) => [c.nEmbd], false, "ln2Weight"],
  ["ln_2.bias", (c) => [c.nEmbd], false, "ln2Bias"],
  ["mlp.c_fc.weight", (c) => [c.nEmbd, 4 * c.nEmbd], true, "fcWeight"],
  ["mlp.c_fc.bias", (c) => [4 * c.nEmbd], false, "fcBias"],
  ["mlp.c_proj.weight", (c) => [4 * c.nEmbd, c.nEmbd], true, "fcProjWeight"],
  ["mlp.c_proj.bias", (c) => [c.nEmbd], false, "fcProjBias"],
];

export function layerTensorName(layer: number, suffix: string): string {
  return `transformer.h.${layer}.${suffix}`;
}

/** Every tensor name and shape in HF's natural order (embeddings, blocks, final LayerNorm), before placement. */
function tensorList(c: GPT2Config): { name: string; shape: number[]; decay: boolean }[] {
  const list = [
    { name: "transformer.wte.weight", shape: [c.vocabSize, c.nEmbd], decay: true },
    { name: "transformer.wpe.weight", shape: [c.nPositions, c.nEmbd], decay: true },
  ];
  for (let i = 0; i < c.nLayer; i++) {
    for (const [suffix, shape, decay] of BLOCK) list.push({ name: layerTensorName(i, suffix), shape: shape(c), decay });
  }
  list.push({ name: "transformer.ln_f.weight", shape: [c.nEmbd], decay: false });
  list.push({ name: "transformer.ln_f.bias", shape: [c.nEmbd], decay: false });
  return list;
}

const alignUp = (n: number) => Math.ceil(n / PARAM_ALIGNMENT) * PARAM_ALIGNMENT;

export function paramLayout(config: GPT2Config): ParamLayout {
  const list = tensorList(config);
  const ordered = [...list.filter((t) => t.decay), ...list.filter((t) => !t.decay)];
  const tensors: TensorSpec[] = [];
  let offset = 0;
  let decayEnd = 0;
  let count = 0;
  for (const t of ordered) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    tensors.push({ ...t, offset, size });
    offset = alignUp(offset + size);
    count += size;
    if (t.decay) decayEnd = offset;
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const get = (name: string) => byName.get(name)!;
  const layers = Array.from({ length: config.nLayer }, (_, i) => {
    const layer = {} as LayerTensors;
    for (const [suffix, , , field] of BLOCK) layer[field] = get(layerTensorName(i, suffix));
    return layer;
  });
  return {
    config,
    tensors,
    byName,
    wte: get("transformer.wte.weight"),
    wpe: get("transformer.wpe.weight"),
    layers,
    lnfWeight: get("transformer.ln_f.weight"),
    lnfBias: get("transformer.ln_f.bias"),
    decayEnd,
    size: offset,
    count,
  };
}

/** The tensor's elements as a view into a flat array in this layout (no copy). */
export function tensorView<A extends Float32Array | Float64Array>(flat: A, spec: TensorSpec): A {
  return flat.subarray(spec.offset, spec.offset + spec.size) as A;
}
