/**
 * The GPU memory a run needs, worked out before any GPU work: every buffer DecoderModel (decoder.ts) allocates for
 * a model and a batch shape — weights, gradients, AdamW m and v, the activations each layer saves for the backward
 * pass, the backward scratch shared by the layers, and the embedding-gradient buckets — sized as createStorage
 * sizes them. A test keeps it equal to what DecoderModel actually allocates, for every family's options.
 *
 * WebGPU says nothing of total device memory; what an adapter does bound is each buffer (maxBufferSize) and each
 * binding (maxStorageBufferBindingSize). Parameters, gradients and moments are bound a tensor slot at a time (the
 * optimizer and the gradient norm walk them in binding-sized chunks; the vocabulary tables — token embedding and
 * LM head — are bound a vocabulary range at a time), so they only need maxBufferSize as a whole and their largest
 * other slot within a binding; every activation is bound whole. There is no [B·T, V] logits buffer: the head runs
 * on chunks of rows whose logits take at most HEAD_LOGITS_BYTES (crossentropy.ts). `fit` checks both limits and
 * says by how much a plan is over.
 */
import { UserError } from "../errors.ts";
import { rotaryDim, type ModelConfig } from "./family.ts";
import { frozenSinkFloats, type LoraLayout } from "./lora.ts";
import { parameterPages, paramLayout } from "./params.ts";
import { headWorkspaceFloats } from "../gpu/kernels/crossentropy.ts";

export type BufferKind = "weights" | "gradients" | "optimizer" | "activations" | "scratch";

export interface PlannedBuffer {
  label: string;
  kind: BufferKind;
  bytes: number;
  /** Bound whole by a kernel (activations), rather than a slot at a time (parameter-layout buffers). */
  boundWhole: boolean;
}

/** The batch shape and training mode a plan is for; with `lora` the base is frozen (adapters trained instead). */
export interface PlanShape {
  B: number;
  T: number;
  training: boolean;
  lora?: LoraLayout;
  /** Activation checkpointing: one layer's activations shared by all, plus each layer's output. */
  checkpointing?: boolean;
  /**
   * The binding limit kernels will use, where it is below HEAD_LOGITS_BYTES (tests that lower it): it sizes the
   * head's row chunk as it does in DecoderModel.
   */
  maxBindingBytes?: number;
  /** The adapter's maxBufferSize: frozen or inference weights above it are split over several buffers (DecoderModel). */
  maxBufferBytes?: number;
}

export interface MemoryPlan {
  B: number;
  T: number;
  training: boolean;
  lora?: LoraLayout;
  checkpointing?: boolean;
  buffers: PlannedBuffer[];
  byKind: Record<BufferKind, number>;
  total: number;
  /**
   * Largest binding of the parameter-layout buffers, bytes: the largest slot other than the vocabulary tables, or
   * the smallest vocabulary range those are split into (64 rows), whichever is larger.
   */
  largestSlotBytes: number;
}

/** createStorage's size: at least 16 bytes, a multiple of 16. */
const stored = (floats: number) => Math.max(16, Math.ceil((floats * 4) / 16) * 16);

export function memoryPlan(config: ModelConfig, shape: PlanShape): MemoryPlan {
  const { B, T, training, lora, checkpointing } = shape;
  const { nLayer: L, nHead: NH, nKVHead: KVH, headDim: hd, nEmbd: C, vocabSize: V, intermediateSize: I, arch } = config;
  const layout = paramLayout(config);
  const N = B * T;
  const Q = NH * hd;
  const KV = KVH * hd;
  const W = Q + 2 * KV;
  const F = arch.mlp === "gelu" ? I : 2 * I;
  const layerNorm = arch.norm === "layer";
  const rotary = arch.positions.kind === "rotary";
  const buffers: PlannedBuffer[] = [];
  const add = (label: string, kind: BufferKind, floats: number, boundWhole = true) => buffers.push({ label, kind, bytes: stored(floats), boundWhole });
  const norm = (label: string) => {
    add(label, "activations", N * C);
    if (layerNorm) add(`${label}.mean`, "activations", N);
    add(`${label}.rstd`, "activations", N);
  };

  const baseTrained = training && !lora;
  parameterPages(layout, baseTrained || !shape.maxBufferBytes ? Infinity : Math.floor(shape.maxBufferBytes / 4)).forEach((p, i) =>
    add(i === 0 ? "params" : `params[${i}]`, "weights", p.end - p.start, false),
  );
  if (training && !lora) {
    add("grads", "gradients", layout.size, false);
    add("adam.m", "optimizer", layout.size, false);
    add("adam.v", "optimizer", layout.size, false);
  }
  if (lora) {
    // the adapters (src/model/lora.ts) with their own gradients and moments; the frozen base has none
    add("lora.params", "weights", lora.size, false);
    if (training) {
      add("lora.grads", "gradients", lora.size, false);
      add("lora.m", "optimizer", lora.size, false);
      add("lora.v", "optimizer", lora.size, false);
    }
    add("lora.h", "scratch", N * lora.rank);
    if (training) add("lora.dh", "scratch", N * lora.rank);
    add("lora.wide", "scratch", N * lora.maxRows);
    if (training && lora.settings.dropout > 0) add("lora.dropped", "scratch", N * lora.maxIn);
    if (training) add("frozen grad sink", "scratch", 2 * frozenSinkFloats(config));
  }
  if (training) add("grad norm²", "scratch", 1);
  add("tokens", "activations", N);
  add("targets", "activations", N);
  add("loss weights", "activations", N);
  add("encoded", "activations", N * C);
  for (let layer = 0; layer < L; layer++) {
    add(`h${layer}.out`, "activations", N * C);
    // checkpointing: the layers share one set of the activations below
    if (checkpointing && layer > 0) continue;
    const l = checkpointing ? "shared" : layer;
    norm(`h${l}.norm1`);
    add(`h${l}.qkv`, "activations", N * W);
    if (rotary) {
      add(`h${l}.q`, "activations", N * Q);
      add(`h${l}.k`, "activations", N * KV);
    }
    if (arch.qkNorm) {
      add(`h${l}.q.rstd`, "activations", N * NH);
      add(`h${l}.k.rstd`, "activations", N * KVH);
    }
    add(`h${l}.attStats`, "activations", 2 * B * NH * T); // flash-style attention: no T×T probabilities
    add(`h${l}.atty`, "activations", N * Q);
    add(`h${l}.attOut`, "activations", N * C);
    if (arch.sandwichNorms) {
      norm(`h${l}.attOutNorm`);
      norm(`h${l}.mlpOutNorm`);
    }
    add(`h${l}.residual2`, "activations", N * C);
    if (arch.block === "sequential") norm(`h${l}.norm2`);
    add(`h${l}.fc`, "activations", N * F);
    add(`h${l}.act`, "activations", N * I);
    add(`h${l}.mlpOut`, "activations", N * C);
  }
  norm("normF");
  if (arch.qkNorm) {
    add("q normed", "activations", N * Q);
    add("k normed", "activations", N * KV);
  }
  if (rotary) add("rotary table", "activations", T * rotaryDim(config));
  add("head rows", "activations", N);
  add("head query rows", "activations", N);
  const head = headWorkspaceFloats(N, V, C, training, shape.maxBindingBytes);
  add("head x", "activations", head.x);
  add("head logits", "activations", head.logits);
  if (training) add("head dx", "scratch", head.dx);
  add("losses", "activations", N);
  if (training) {
    const scratch = (label: string, floats: number) => add(label, "scratch", floats);
    scratch("d.residual", N * C);
    scratch("d.ln", N * C);
    scratch("d.qkv", N * W);
    scratch("attention D", B * NH * T);
    scratch("d.atty", N * Q);
    scratch("d.fc", N * F);
    scratch("d.act", N * I);
    if (rotary) {
      scratch("d.q", N * Q);
      scratch("d.k", N * KV);
    }
    if (arch.qkNorm) {
      scratch("d.q normed", N * Q);
      scratch("d.k normed", N * KV);
    }
    if (arch.sandwichNorms) scratch("d.normed", N * C);
    scratch("embedding bucket tokens", N);
    scratch("embedding bucket offsets", N + 1);
    scratch("embedding bucket positions", N);
  }
  const byKind: Record<BufferKind, number> = { weights: 0, gradients: 0, optimizer: 0, activations: 0, scratch: 0 };
  for (const b of buffers) byKind[b.kind] += b.bytes;
  const vocabularyTables = new Set(["wte", "head.weight"]);
  const others = layout.slots.filter((s) => !(s.layer === null && vocabularyTables.has(s.role)));
  const largestSlotBytes = Math.max(64 * C * 4, ...others.map((s) => s.size * 4));
  return { B, T, training, lora, checkpointing, buffers, byKind, total: buffers.reduce((s, b) => s + b.bytes, 0), largestSlotBytes };
}

export interface AdapterLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface Overrun {
  what: string;
  bytes: number;
  limit: number;
  limitName: keyof AdapterLimits;
}

/** Everything in the plan that exceeds a limit, worst first (empty: the run fits). */
export function overruns(plan: MemoryPlan, limits: AdapterLimits): Overrun[] {
  const out: Overrun[] = [];
  for (const b of plan.buffers) {
    if (b.bytes > limits.maxBufferSize) out.push({ what: `buffer ${b.label}`, bytes: b.bytes, limit: limits.maxBufferSize, limitName: "maxBufferSize" });
    else if (b.boundWhole && b.bytes > limits.maxStorageBufferBindingSize) {
      out.push({ what: `buffer ${b.label}`, bytes: b.bytes, limit: limits.maxStorageBufferBindingSize, limitName: "maxStorageBufferBindingSize" });
    }
  }
  if (plan.largestSlotBytes > limits.maxStorageBufferBindingSize) {
    out.push({ what: "largest parameter tensor", bytes: plan.largestSlotBytes, limit: limits.maxStorageBufferBindingSize, limitName: "maxStorageBufferBindingSize" });
  }
  return out.sort((a, b) => b.bytes - b.limit - (a.bytes - a.limit));
}

/** The plan as DecoderModel sizes it on an adapter with these limits (the head's row chunk follows the binding limit). */
function planFor(config: ModelConfig, shape: PlanShape, limits: AdapterLimits): MemoryPlan {
  return memoryPlan(config, { ...shape, maxBindingBytes: limits.maxStorageBufferBindingSize, maxBufferBytes: limits.maxBufferSize });
}

/** The largest batch rows (≤ B) at this T whose plan fits, or 0 when even one row does not. */
export function largestFittingBatch(config: ModelConfig, shape: PlanShape, limits: AdapterLimits): number {
  for (let b = shape.B; b >= 1; b = b > 8 ? Math.floor(b / 2) : b - 1) {
    if (overruns(planFor(config, { ...shape, B: b }, limits), limits).length === 0) return b;
  }
  return 0;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/**
 * One line saying why a run cannot fit (null when it does): the worst overrun, by how much, and what would fit.
 */
export function fitError(config: ModelConfig, plan: MemoryPlan, limits: AdapterLimits): string | null {
  const over = overruns(planFor(config, plan, limits), limits);
  if (over.length === 0) return null;
  const worst = over[0];
  const fits = largestFittingBatch(config, plan, limits);
  const advice = fits > 0 ? `; --batch-size ${fits} fits at ${plan.T} tokens` : "; lower the sequence length (no batch size fits at this one)";
  return (
    `the run cannot fit the GPU: ${worst.what} needs ${formatBytes(worst.bytes)}, over the adapter's ${worst.limitName} ` +
    `(${formatBytes(worst.limit)}) by ${formatBytes(worst.bytes - worst.limit)}${over.length > 1 ? ` (${over.length - 1} more over)` : ""}${advice}`
  );
}

/** Throws the UserError train and train-lm refuse a run with when its training buffers cannot fit the device. */
export function assertTrainingFits(config: ModelConfig, shape: { B: number; T: number; lora?: LoraLayout; checkpointing?: boolean }, limits: AdapterLimits): void {
  const error = fitError(config, planFor(config, { ...shape, training: true }, limits), limits);
  if (error) throw new UserError(error, 422);
}
