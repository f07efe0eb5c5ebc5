/**
 * The parameter layout: every tensor of a model (familyTensors in family.ts: HF names, shapes, roles) placed in ONE
 * flat float array; parameters, gradients and both AdamW moments each use the same layout.
 *
 * - Each role's slot starts at a multiple of 64 floats (256 bytes, WebGPU's minStorageBufferOffsetAlignment), so it
 *   can be bound on the GPU as a byte range of the one buffer. The gaps stay zero in every array.
 * - A slot with several parts (q/k/v projections, gate/up) holds them back to back, so the graph multiplies by the
 *   fused matrix in one product; the parts stay separate HF tensors for loading and saving.
 * - Weight decay goes to the rank-2 tensors (matmul weights, embeddings), as nanoGPT does; biases and norm gains are
 *   not decayed. All decayed slots come first, so the optimizer runs over two contiguous ranges: [0, decayEnd)
 *   with weight decay and [decayEnd, size) without.
 * - Weights keep their HF layout (Conv1D [in, out] for GPT-2, nn.Linear [out, in] otherwise), so loading and saving
 *   need no transposes; the graph picks the matching product.
 */
import type { GlobalRole, LayerRole, ModelConfig } from "./family.ts";
import { familyTensors } from "./family.ts";

export const PARAM_ALIGNMENT = 64;

export interface TensorSpec {
  /** HF name, e.g. "transformer.h.0.attn.c_attn.weight". */
  name: string;
  shape: number[];
  /** Element offset into the flat array. */
  offset: number;
  /** Element count (product of shape). */
  size: number;
  decay: boolean;
}

/** One role's placement: the fused tensor (offset a multiple of PARAM_ALIGNMENT) and its HF parts inside it. */
export interface SlotSpec extends TensorSpec {
  role: GlobalRole | LayerRole;
  layer: number | null;
  parts: TensorSpec[];
}

export interface ParamLayout {
  config: ModelConfig;
  /** Every HF tensor, in placement order (decayed first); offsets increase along the list. */
  tensors: TensorSpec[];
  byName: Map<string, TensorSpec>;
  /** Every role's slot, in placement order. */
  slots: SlotSpec[];
  /** Global slots by role (absent roles: e.g. no wpe with rotary positions, no head with a tied one). */
  global: Partial<Record<GlobalRole, SlotSpec>>;
  /** Per block, its slots by role. */
  layers: Partial<Record<LayerRole, SlotSpec>>[];
  /** The token embedding (also the head when tied). */
  wte: SlotSpec;
  /** End of the weight-decayed range (start of the rest); a multiple of PARAM_ALIGNMENT. */
  decayEnd: number;
  /** Total floats, padding included; a multiple of PARAM_ALIGNMENT. */
  size: number;
  /** Floats that are real parameters (padding excluded). */
  count: number;
}

/** n floats rounded up to a whole number of PARAM_ALIGNMENT blocks (where the next tensor may start). */
export const alignUp = (n: number) => Math.ceil(n / PARAM_ALIGNMENT) * PARAM_ALIGNMENT;

export function paramLayout(config: ModelConfig): ParamLayout {
  const list = familyTensors(config);
  const ordered = [...list.filter((t) => t.decay), ...list.filter((t) => !t.decay)];
  const slots: SlotSpec[] = [];
  const tensors: TensorSpec[] = [];
  let offset = 0;
  let decayEnd = 0;
  let count = 0;
  for (const slot of ordered) {
    const parts: TensorSpec[] = [];
    let at = offset;
    for (const part of slot.parts) {
      const size = part.shape.reduce((a, b) => a * b, 1);
      parts.push({ name: part.name, shape: part.shape, offset: at, size, decay: slot.decay });
      at += size;
    }
    const size = at - offset;
    const name = slot.parts.length === 1 ? slot.parts[0].name : slot.parts.map((p) => p.name).join("+");
    slots.push({ name, shape: slot.shape, offset, size, decay: slot.decay, role: slot.role, layer: slot.layer, parts });
    tensors.push(...parts);
    offset = alignUp(at);
    count += size;
    if (slot.decay) decayEnd = offset;
  }
  const layers = Array.from({ length: config.nLayer }, () => ({}) as Partial<Record<LayerRole, SlotSpec>>);
  const global: Partial<Record<GlobalRole, SlotSpec>> = {};
  for (const s of slots) {
    if (s.layer === null) global[s.role as GlobalRole] = s;
    else layers[s.layer][s.role as LayerRole] = s;
  }
  return {
    config,
    tensors,
    byName: new Map(tensors.map((t) => [t.name, t])),
    slots,
    global,
    layers,
    wte: global.wte!,
    decayEnd,
    size: offset,
    count,
  };
}

/** The tensor's elements as a view into a flat array in this layout (no copy). */
export function tensorView<A extends Float32Array | Float64Array>(flat: A, spec: TensorSpec): A {
  return flat.subarray(spec.offset, spec.offset + spec.size) as A;
}

/** A range [start, end) of the flat layout held by one GPU buffer. */
export interface ParameterPage {
  start: number;
  end: number;
}

/**
 * The flat layout cut into pages of at most maxFloats, at slot boundaries (a slot never straddles two buffers), for
 * adapters whose maxBufferSize is below the whole layout; one page when it fits (or when no limit is given). Only
 * for parameters that no kernel walks whole — a frozen base or inference; trained ones stay one buffer.
 */
export function parameterPages(layout: ParamLayout, maxFloats = Infinity): ParameterPage[] {
  if (layout.size <= maxFloats) return [{ start: 0, end: layout.size }];
  const pages: ParameterPage[] = [];
  let start = 0;
  for (const slot of layout.slots) {
    const end = slot.offset + alignUp(slot.size);
    if (end - start > maxFloats && slot.offset > start) {
      pages.push({ start, end: slot.offset });
      start = slot.offset;
    }
  }
  pages.push({ start, end: layout.size });
  return pages;
}
