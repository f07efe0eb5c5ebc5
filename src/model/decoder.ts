/**
 * The decoder on the GPU: one forward and backward graph over the kernels of src/gpu/kernels, whose blocks are
 * chosen by the model's FamilyDescription (family.ts) — LayerNorm or RMSNorm, learned or rotary positions, MHA,
 * GQA or MQA with optional q/k norms and biases, GELU or gated MLP, sequential or parallel block, tied or untied
 * head. It knows roles (slots of params.ts), never HF names, so GPT-2, Llama, Qwen, Gemma and Phi are one graph.
 *
 * llm.c style: one flat parameter buffer (and gradient, AdamW m and v buffers of the same layout), activations
 * saved per layer for the backward pass, and a single residual-gradient buffer that the norm backward passes
 * accumulate into (so the residual fan-out needs no extra kernel). q, k and v are read in place from the fused
 * projection through token views; only what rotary and q/k norms produce gets buffers of its own.
 *
 * A model is built for a maximum batch shape (B, T); any smaller B·T runs with the same buffers, so bind groups
 * stay cached across steps and nothing is allocated per step.
 *
 * The LM head never materialises [N, V] logits: it runs fused with the cross-entropy (and, when training, its own
 * backward) only on the positions whose loss weight is non-zero, a chunk of rows at a time (crossentropy.ts).
 * Logits are computed on request (readLogits*) from the final norm's output of the last forward.
 */
import type { Gpu } from "../gpu/device.ts";
import { bind, createStorage, readFloat32, upload } from "../gpu/buffers.ts";
import { Recorder, type Binding } from "../gpu/recorder.ts";
import { denseView, type EmbeddingBuckets, type HeadOperands, type HeadWorkspace, type Kernels, type TokenView } from "../gpu/kernels/index.ts";
import { headWorkspaceFloats } from "../gpu/kernels/crossentropy.ts";
import { bindingLimit } from "../gpu/chunks.ts";
import { rotaryTable } from "../gpu/kernels/rotary.ts";
import { STATUS } from "../gpu/kernels/guard.ts";
import { UserError } from "../errors.ts";
import { type LayerRole, type ModelConfig, rotaryDim } from "./family.ts";
import { type AdapterSpec, dropoutKey, frozenSinkFloats, type LoraLayout } from "./lora.ts";
import { type ParameterPage, parameterPages, paramLayout, type ParamLayout, type SlotSpec } from "./params.ts";

export interface Batch {
  /** B·T token ids, row-major [B,T]. */
  tokens: Uint32Array;
  /** B·T next-token targets (any id where the weight is 0). */
  targets: Uint32Array;
  /** B·T per-token loss weights: 0 excludes a position (padding, prompt), 1 is plain LM loss. */
  weights: Float32Array;
  B: number;
  T: number;
}

/**
 * The key/value cache of incremental decoding (DecoderModel.createCache, used by src/eval/decode.ts): per layer k
 * (after q/k norm and rotary) and v, [rows, length, KVH·hd], and the small per-pass inputs. Allocated only when
 * asked for, never for training, and not counted in the model's allocatedBytes (the memory plan's figure).
 */
export interface KVCache {
  readonly rows: number;
  readonly length: number;
  readonly layers: ReadonlyArray<{ k: GPUBuffer; v: GPUBuffer }>;
  /** Per token of a pass (u32): its id, its cache row and its position there. */
  readonly tokens: GPUBuffer;
  readonly rowOf: GPUBuffer;
  readonly positions: GPUBuffer;
  /** Per output row: the index in the pass of the token whose next-token logits it gets. */
  readonly last: GPUBuffer;
  /** The last layer's output at those tokens [rows, C], and their logits [rows, V] after `forwardCached`. */
  readonly gathered: GPUBuffer;
  readonly logits: GPUBuffer;
  readonly bytes: number;
  destroy(): void;
}

/** One pass of incremental decoding: tokens of any rows (a whole prompt, or one new token per row) at their positions. */
export interface CachedPass {
  tokens: Uint32Array;
  rows: Uint32Array;
  positions: Uint32Array;
  /** For each output row, the index into `tokens` whose next-token logits it gets. */
  last: Uint32Array;
}

export interface ModelOptions {
  /** Maximum batch rows and sequence length this instance will run. */
  B: number;
  T: number;
  /** Allocate gradients, AdamW state and backward scratch. */
  training: boolean;
  /**
   * LoRA adapters on the linear layers (src/model/lora.ts). Training then freezes the base: gradients and AdamW
   * moments exist for the adapters only (their own flat buffers), while dx still flows through every W.
   */
  lora?: LoraLayout;
  /**
   * Activation checkpointing: keep only each layer's input (the previous layer's output) and one layer's
   * activations, shared by all layers; backward recomputes a layer's forward before its backward. Costs one more
   * forward pass per step, saves (L − 1) layers of activations.
   */
  checkpointing?: boolean;
  /** Page size for frozen or inference weights (default: the adapter's maxBufferSize; tests set less). */
  maxBufferBytes?: number;
}

/** The adapters' buffers: parameters, and when training their gradients and moments, plus the scratch of one product. */
interface LoraBuffers {
  layout: LoraLayout;
  params: GPUBuffer;
  grads: GPUBuffer | null;
  m: GPUBuffer | null;
  v: GPUBuffer | null;
  /** [N, r]: dropout(x)·Aᵀ (recomputed in backward rather than saved per layer). */
  h: GPUBuffer;
  /** [N, r]: ∂/∂h (training). */
  dh: GPUBuffer | null;
  /** [N, maxRows]: h·Bᵀ before it is added into its rows; in backward the adapter's slice of dy, scaled. */
  wide: GPUBuffer;
  /** [N, maxIn]: dropout(x), then in backward ∂/∂dropout(x) (only with dropout, training). */
  dropped: GPUBuffer | null;
}

type NormRole = "norm1" | "norm2" | "normF" | "attnOutNorm" | "mlpOutNorm";

/** A norm's output and what its backward pass needs (mean only for LayerNorm). */
interface NormActivations {
  out: GPUBuffer;
  mean: GPUBuffer | null;
  rstd: GPUBuffer;
}

interface LayerActivations {
  norm1: NormActivations;
  /** [N, (NH + 2·KVH)·hd]: q | k | v. */
  qkv: GPUBuffer;
  /** q and k as attention reads them, after q/k norm and rotary ([N, NH·hd], [N, KVH·hd]); null: views of qkv. */
  q: GPUBuffer | null;
  k: GPUBuffer | null;
  /** Per-head rstd of the q/k norms. */
  qRstd: GPUBuffer | null;
  kRstd: GPUBuffer | null;
  /** [B, NH, T, 2]: each attention row's score max and 1/Σexp, from which the backward pass recomputes the probabilities. */
  attStats: GPUBuffer;
  atty: GPUBuffer;
  attOut: GPUBuffer;
  /** Sandwich norms (Gemma 2): the attention and MLP outputs normalised before their residual adds. */
  attOutNorm: NormActivations | null;
  mlpOutNorm: NormActivations | null;
  /** Sequential: x + attention; parallel: x + attention too (the MLP adds into `out`). */
  residual2: GPUBuffer;
  norm2: NormActivations | null;
  fc: GPUBuffer;
  act: GPUBuffer;
  mlpOut: GPUBuffer;
  out: GPUBuffer;
}

/** Scratch for one layer's backward pass, reused by every layer (layers are processed one after another). */
interface BackwardScratch {
  dresidual: GPUBuffer; dln: GPUBuffer; dqkv: GPUBuffer; attDelta: GPUBuffer; datty: GPUBuffer; dfc: GPUBuffer; dact: GPUBuffer;
  /** Gradients of the rotated / normed q and k (rotary or q/k norm only). */
  dq: GPUBuffer | null; dk: GPUBuffer | null; dqNormed: GPUBuffer | null; dkNormed: GPUBuffer | null;
  /** Gradient of a sandwich norm's input (Gemma 2). */
  dnormed: GPUBuffer | null;
}

export class DecoderModel {
  readonly layout: ParamLayout;
  readonly params: GPUBuffer;
  readonly grads: GPUBuffer | null;
  readonly m: GPUBuffer | null;
  readonly v: GPUBuffer | null;
  private readonly tokens: GPUBuffer;
  private readonly targets: GPUBuffer;
  private readonly lossWeights: GPUBuffer;
  private readonly encoded: GPUBuffer;
  private readonly layers: LayerActivations[];
  private readonly normF: NormActivations;
  /** q/k after their norm, before rotary (forward scratch shared by the layers). */
  private readonly qNormed: GPUBuffer | null;
  private readonly kNormed: GPUBuffer | null;
  private readonly rotary: GPUBuffer | null;
  /** The head's buffers: the batch's weighted positions (u32, set by setBatch), rows asked for by readLogits*. */
  private readonly headRows: GPUBuffer;
  private readonly queryRows: GPUBuffer;
  private weightedRows = 0;
  private readonly head: HeadWorkspace;
  /** Set by a forward with gradScale ≠ 0, which runs the head's backward (dnormF in the backward scratch). */
  private headGradientRecorded = false;
  private logitsRecorder: Recorder | null = null;
  /** Output rows of each cache's last forwardCached pass (its logits are [V, rows]). */
  private readonly cachedRows = new WeakMap<KVCache, number>();
  /** Per-position weighted losses [B·T] after forward (0 where the weight is 0). */
  readonly losses: GPUBuffer;
  /** The training step's status words (shaders/guard.wgsl): ‖g‖² as AdamW reads it, loss sum, diverged flag, raw ‖g‖². */
  readonly stepStatus: GPUBuffer | null;
  private readonly scratch: BackwardScratch | null;
  private readonly buckets: EmbeddingBuckets | null;
  private current: { B: number; T: number } | null = null;
  /** The parameter buffers: one (params) unless the frozen weights exceed maxBufferSize. */
  private readonly pages: (ParameterPage & { buffer: GPUBuffer })[];
  readonly lora: LoraBuffers | null;
  /** With a frozen base: where the norm kernels' weight gradients go (two ranges: LayerNorm writes weight and bias). */
  private readonly frozenSink: GPUBuffer | null;
  /** Seed of the adapters' dropout masks for the next training forward pass (the trainer draws one per micro-batch). */
  dropoutSeed = 0;
  /** Whether the last forward applied dropout (a training pass): its backward regenerates the same masks. */
  private dropoutActive = false;
  /** Bytes of every GPU buffer this model allocated (the trainer's GPU memory, kernel scratch aside). */
  readonly allocatedBytes: number;
  private readonly dims: { C: number; NH: number; KVH: number; hd: number; Q: number; KV: number; W: number; I: number; F: number; V: number; R: number };

  constructor(
    readonly gpu: Gpu,
    readonly kernels: Kernels,
    readonly config: ModelConfig,
    readonly options: ModelOptions,
  ) {
    const { B, T } = options;
    const { nLayer: L, nHead: NH, nKVHead: KVH, headDim: hd, nEmbd: C, vocabSize: V, nPositions, intermediateSize: I, arch } = config;
    if (T > nPositions) throw new UserError(`sequence length ${T} exceeds the model's n_positions (${nPositions})`);
    if (arch.qkNorm && arch.positions.kind !== "rotary") throw new Error("q/k norm without rotary positions is not implemented");
    const Q = NH * hd;
    const KV = KVH * hd;
    const F = arch.mlp === "gelu" ? I : 2 * I;
    const R = rotaryDim(config);
    this.dims = { C, NH, KVH, hd, Q, KV, W: Q + 2 * KV, I, F, V, R };
    this.layout = paramLayout(config);
    let allocated = 0;
    const f = (label: string, floats: number) => {
      const buffer = createStorage(gpu, label, floats * 4);
      allocated += buffer.size;
      return buffer;
    };
    const N = B * T;
    const layerNorm = arch.norm === "layer";
    const rotary = arch.positions.kind === "rotary";
    const norm = (label: string): NormActivations => ({ out: f(label, N * C), mean: layerNorm ? f(`${label}.mean`, N) : null, rstd: f(`${label}.rstd`, N) });
    // a frozen base (LoRA) has no gradients or moments: the memory LoRA exists to save
    const baseTrained = options.training && !options.lora;
    // weights no kernel walks whole may span several buffers, each within the adapter's maxBufferSize
    const pages = parameterPages(this.layout, baseTrained ? Infinity : Math.floor((options.maxBufferBytes ?? gpu.device.limits.maxBufferSize) / 4));
    this.pages = pages.map((p, i) => ({ ...p, buffer: f(i === 0 ? "params" : `params[${i}]`, p.end - p.start) }));
    this.params = this.pages[0].buffer;
    this.grads = baseTrained ? f("grads", this.layout.size) : null;
    this.m = baseTrained ? f("adam.m", this.layout.size) : null;
    this.v = baseTrained ? f("adam.v", this.layout.size) : null;
    const lora = options.lora;
    this.lora = lora
      ? {
          layout: lora,
          params: f("lora.params", lora.size),
          grads: options.training ? f("lora.grads", lora.size) : null,
          m: options.training ? f("lora.m", lora.size) : null,
          v: options.training ? f("lora.v", lora.size) : null,
          h: f("lora.h", N * lora.rank),
          dh: options.training ? f("lora.dh", N * lora.rank) : null,
          wide: f("lora.wide", N * lora.maxRows),
          dropped: options.training && lora.settings.dropout > 0 ? f("lora.dropped", N * lora.maxIn) : null,
        }
      : null;
    this.frozenSink = options.training && lora ? f("frozen grad sink", 2 * frozenSinkFloats(config)) : null;
    this.stepStatus = options.training ? f("step status", STATUS.words) : null;
    this.tokens = f("tokens", N);
    this.targets = f("targets", N);
    this.lossWeights = f("loss weights", N);
    this.encoded = f("encoded", N * C);
    const layerBuffers = (l: number | string): Omit<LayerActivations, "out"> => ({
      norm1: norm(`h${l}.norm1`),
      qkv: f(`h${l}.qkv`, N * this.dims.W),
      q: rotary ? f(`h${l}.q`, N * Q) : null,
      k: rotary ? f(`h${l}.k`, N * KV) : null,
      qRstd: arch.qkNorm ? f(`h${l}.q.rstd`, N * NH) : null,
      kRstd: arch.qkNorm ? f(`h${l}.k.rstd`, N * KVH) : null,
      attStats: f(`h${l}.attStats`, 2 * B * NH * T),
      atty: f(`h${l}.atty`, N * Q),
      attOut: f(`h${l}.attOut`, N * C),
      attOutNorm: arch.sandwichNorms ? norm(`h${l}.attOutNorm`) : null,
      mlpOutNorm: arch.sandwichNorms ? norm(`h${l}.mlpOutNorm`) : null,
      residual2: f(`h${l}.residual2`, N * C),
      norm2: arch.block === "sequential" ? norm(`h${l}.norm2`) : null,
      fc: f(`h${l}.fc`, N * F),
      act: f(`h${l}.act`, N * I),
      mlpOut: f(`h${l}.mlpOut`, N * C),
    });
    // with checkpointing every layer writes the same activations; only its output (the next one's input) is its own
    const shared = options.checkpointing ? layerBuffers("shared") : null;
    this.layers = Array.from({ length: L }, (_, l) => ({ ...(shared ?? layerBuffers(l)), out: f(`h${l}.out`, N * C) }));
    this.normF = norm("normF");
    this.qNormed = arch.qkNorm ? f("q normed", N * Q) : null;
    this.kNormed = arch.qkNorm ? f("k normed", N * KV) : null;
    if (rotary && arch.positions.kind === "rotary") {
      this.rotary = f("rotary table", T * R);
      upload(gpu, bind(this.rotary), rotaryTable(T, R, arch.positions.theta, arch.positions.scaling));
    } else {
      this.rotary = null;
    }
    this.headRows = f("head rows", N);
    this.queryRows = f("head query rows", N);
    const ws = headWorkspaceFloats(N, V, C, options.training, bindingLimit(kernels.context));
    this.head = {
      rowChunk: ws.rowChunk,
      x: bind(f("head x", ws.x)),
      logits: bind(f("head logits", ws.logits)),
      dx: options.training ? bind(f("head dx", ws.dx)) : null,
    };
    this.losses = f("losses", N);
    this.scratch = options.training
      ? {
          dresidual: f("d.residual", N * C), dln: f("d.ln", N * C), dqkv: f("d.qkv", N * this.dims.W),
          attDelta: f("attention D", B * NH * T), datty: f("d.atty", N * Q), dfc: f("d.fc", N * F), dact: f("d.act", N * I),
          dq: rotary ? f("d.q", N * Q) : null, dk: rotary ? f("d.k", N * KV) : null,
          dqNormed: arch.qkNorm ? f("d.q normed", N * Q) : null, dkNormed: arch.qkNorm ? f("d.k normed", N * KV) : null,
          dnormed: arch.sandwichNorms ? f("d.normed", N * C) : null,
        }
      : null;
    this.buckets = options.training ? kernels.embedding.createBuckets(N) : null;
    this.allocatedBytes = allocated;
  }

  /** A parameter tensor (HF name) as a binding into the flat buffer (its slot must start it: one-part slots). */
  param(name: string, buffer: GPUBuffer = this.params): Binding {
    const t = this.layout.byName.get(name);
    if (!t) throw new Error(`no parameter ${name}`);
    return this.bindIn(buffer, t.offset, t.size);
  }

  /** Elements [offset, offset + size) of a buffer in the parameter layout (the page that holds them, for params). */
  private bindIn(buffer: GPUBuffer, offset: number, size: number): Binding {
    if (buffer !== this.params || this.pages.length === 1) return bind(buffer, offset * 4, size * 4);
    const page = this.pages.find((p) => offset >= p.start && offset < p.end)!;
    return bind(page.buffer, (offset - page.start) * 4, size * 4);
  }

  private slotOf(role: LayerRole | "wte" | "wpe" | "normF.weight" | "normF.bias" | "head.weight" | "head.bias", layer: number | null): SlotSpec | undefined {
    return layer === null ? this.layout.global[role as keyof ParamLayout["global"]] : this.layout.layers[layer][role as LayerRole];
  }

  /** The slot of a role as a binding of params (or of another buffer in the same layout), or undefined if absent. */
  private at(role: Parameters<DecoderModel["slotOf"]>[0], layer: number | null, buffer: GPUBuffer = this.params): Binding | undefined {
    const s = this.slotOf(role, layer);
    return s ? this.bindIn(buffer, s.offset, s.size) : undefined;
  }

  private must(role: Parameters<DecoderModel["slotOf"]>[0], layer: number | null, buffer: GPUBuffer = this.params): Binding {
    const b = this.at(role, layer, buffer);
    if (!b) throw new Error(`model has no ${role}${layer === null ? "" : ` in layer ${layer}`}`);
    return b;
  }

  private get gradBuffer(): GPUBuffer {
    if (!this.grads) throw new Error(this.lora ? "the base is frozen (LoRA): it has no gradients" : "model was built without gradients (training: false)");
    return this.grads;
  }

  /** The gradient of a (small, one-dimensional) base tensor, or with a frozen base a sink range of its size. */
  private baseGrad(role: Parameters<DecoderModel["slotOf"]>[0], layer: number | null, sinkRange: 0 | 1 = 0): Binding {
    if (this.grads) return this.must(role, layer, this.grads);
    if (!this.frozenSink) throw new Error("model was built without gradients (training: false)");
    const size = this.slotOf(role, layer)!.size;
    return bind(this.frozenSink, sinkRange * frozenSinkFloats(this.config) * 4, size * 4);
  }

  /** The buffers the optimizer trains: the adapters with LoRA, else every parameter. */
  private get trainable(): { params: GPUBuffer; grads: GPUBuffer; m: GPUBuffer; v: GPUBuffer; size: number; decayEnd: number } {
    if (this.lora) {
      const { params, grads, m, v, layout } = this.lora;
      if (!grads || !m || !v) throw new Error("model was built without optimizer state");
      // adapters are matmul weights: all decayed, as HF's Trainer decays every non-bias, non-norm parameter
      return { params, grads, m, v, size: layout.size, decayEnd: layout.size };
    }
    if (!this.grads || !this.m || !this.v) throw new Error("model was built without optimizer state");
    return { params: this.params, grads: this.grads, m: this.m, v: this.v, size: this.layout.size, decayEnd: this.layout.decayEnd };
  }

  setParameters(flat: Float32Array): void {
    if (flat.length !== this.layout.size) {
      throw new Error(`parameter vector has ${flat.length} floats, layout needs ${this.layout.size}`);
    }
    for (const p of this.pages) upload(this.gpu, bind(p.buffer), flat.subarray(p.start, p.end));
  }

  async getParameters(): Promise<Float32Array> {
    const out = new Float32Array(this.layout.size);
    for (const p of this.pages) out.set(await readFloat32(this.gpu, bind(p.buffer, 0, (p.end - p.start) * 4)), p.start);
    return out;
  }

  /** Gradients of what is trained: every parameter (params' layout), or with LoRA the adapters (their layout). */
  async getGradients(): Promise<Float32Array> {
    if (this.lora) {
      if (!this.lora.grads) throw new Error("model was built without gradients (training: false)");
      return readFloat32(this.gpu, bind(this.lora.grads, 0, this.lora.layout.size * 4));
    }
    return readFloat32(this.gpu, bind(this.gradBuffer, 0, this.layout.size * 4));
  }

  /** AdamW m and v of what is trained (the adapters' with LoRA). */
  async getOptimizerState(): Promise<{ m: Float32Array; v: Float32Array }> {
    const t = this.trainable;
    const bytes = t.size * 4;
    return { m: await readFloat32(this.gpu, bind(t.m, 0, bytes)), v: await readFloat32(this.gpu, bind(t.v, 0, bytes)) };
  }

  setOptimizerState(m: Float32Array, v: Float32Array): void {
    const t = this.trainable;
    if (m.length !== t.size || v.length !== t.size) throw new Error(`optimizer state has ${m.length} floats, the trained parameters ${t.size}`);
    upload(this.gpu, bind(t.m), m);
    upload(this.gpu, bind(t.v), v);
  }

  /** Uploads the adapters (in the LoRA layout). */
  setAdapters(flat: Float32Array): void {
    if (!this.lora) throw new Error("model was built without LoRA adapters");
    if (flat.length !== this.lora.layout.size) throw new Error(`adapter vector has ${flat.length} floats, layout needs ${this.lora.layout.size}`);
    upload(this.gpu, bind(this.lora.params), flat);
  }

  async getAdapters(): Promise<Float32Array> {
    if (!this.lora) throw new Error("model was built without LoRA adapters");
    return readFloat32(this.gpu, bind(this.lora.params, 0, this.lora.layout.size * 4));
  }

  /** Uploads a batch (ids checked against the vocabulary, shape against the allocated maximum). */
  setBatch(batch: Batch): void {
    const { B, T } = batch;
    const { nPositions, vocabSize } = this.config;
    if (T > nPositions) throw new UserError(`input of ${T} tokens is longer than the model's n_positions (${nPositions})`);
    if (B * T > this.options.B * this.options.T || T > this.options.T) {
      throw new UserError(`batch ${B}x${T} exceeds the ${this.options.B}x${this.options.T} this model was built for`);
    }
    const n = B * T;
    for (const [name, arr] of [["tokens", batch.tokens], ["targets", batch.targets], ["weights", batch.weights]] as const) {
      if (arr.length !== n) throw new Error(`batch.${name} has ${arr.length} entries, expected ${B}x${T}=${n}`);
    }
    for (let i = 0; i < n; i++) {
      if (batch.tokens[i] >= vocabSize) throw new UserError(`token id ${batch.tokens[i]} is outside the vocabulary (${vocabSize})`);
      if (batch.weights[i] !== 0 && batch.targets[i] >= vocabSize) {
        throw new UserError(`target id ${batch.targets[i]} is outside the vocabulary (${vocabSize})`);
      }
    }
    upload(this.gpu, bind(this.tokens), batch.tokens);
    upload(this.gpu, bind(this.targets), batch.targets);
    upload(this.gpu, bind(this.lossWeights), batch.weights);
    const weighted = new Uint32Array(n);
    let count = 0;
    for (let i = 0; i < n; i++) if (batch.weights[i] !== 0) weighted[count++] = i;
    upload(this.gpu, bind(this.headRows), weighted.subarray(0, Math.max(count, 1)));
    this.weightedRows = count;
    this.headGradientRecorded = false;
    this.buckets?.update(batch.tokens);
    this.current = { B, T };
  }

  // ---- building blocks ----

  /**
   * out[N,outDim] = x·Wᵀ (+ b) for nn.Linear weights [out, in], x·W (+ b) for Conv1D weights [in, out], plus any LoRA
   * adapters' terms; with `gelu`, also gelu = GELU(out) of that final out.
   */
  private linear(r: Recorder, o: { out: Binding; x: Binding; role: LayerRole; layer: number; M: number; outDim: number; inDim: number; gelu?: Binding }): void {
    const weight = this.must(o.role, o.layer);
    const bias = this.at(o.role.replace(".weight", ".bias") as LayerRole, o.layer);
    const linear = this.config.arch.weightLayout === "linear";
    const adapters = this.adaptersOf(o.role, o.layer);
    // GELU rides in the product's epilogue only when nothing is added to out after it (a LoRA adapter is).
    const fuse = o.gelu && adapters.length === 0;
    this.kernels.matmul.matmul(r, { out: o.out, a: o.x, b: weight, bias, gelu: fuse ? o.gelu : undefined, M: o.M, N: o.outDim, K: o.inDim, transB: linear });
    for (const adapter of adapters) this.adapterForward(r, adapter, o);
    if (o.gelu && !fuse) this.kernels.gelu.forward(r, { out: o.gelu, inp: o.out, n: o.M * o.outDim });
  }

  /** Backward of `linear`: dx (= or += with accumulateDx) = dy·W…, dW += …, db += Σ dy. */
  private linearBackward(r: Recorder, o: { dx: Binding; dy: Binding; x: Binding; role: LayerRole; layer: number; M: number; outDim: number; inDim: number; accumulateDx?: boolean }): void {
    const k = this.kernels.matmul;
    const weight = this.must(o.role, o.layer);
    const { M, outDim, inDim } = o;
    const linear = this.config.arch.weightLayout === "linear";
    k.matmul(r, { out: o.dx, a: o.dy, b: weight, M, N: inDim, K: outDim, transB: !linear, accumulate: o.accumulateDx });
    if (this.grads) {
      // a frozen base (LoRA) skips its weight and bias gradients altogether
      const dweight = this.must(o.role, o.layer, this.grads);
      const dbias = this.at(o.role.replace(".weight", ".bias") as LayerRole, o.layer, this.grads);
      if (linear) k.matmul(r, { out: dweight, a: o.dy, b: o.x, M: outDim, N: inDim, K: M, transA: true, accumulate: true });
      else k.matmul(r, { out: dweight, a: o.x, b: o.dy, M: inDim, N: outDim, K: M, transA: true, accumulate: true });
      if (dbias) k.biasBackward(r, { dbias, dout: o.dy, M, N: outDim });
    }
    for (const adapter of this.adaptersOf(o.role, o.layer)) this.adapterBackward(r, adapter, o);
  }

  // ---- LoRA adapters (src/model/lora.ts): y[:, rows] += scale·dropout(x)·Aᵀ·Bᵀ ----

  private adaptersOf(role: LayerRole, layer: number): AdapterSpec[] {
    return this.lora?.layout.byLayer[layer]?.[role as keyof LoraLayout["byLayer"][number]] ?? [];
  }

  private adapterBindings(a: AdapterSpec, buffer: GPUBuffer): { A: Binding; B: Binding } {
    const r = this.lora!.layout.rank;
    return { A: bind(buffer, a.aOffset * 4, r * a.inDim * 4), B: bind(buffer, a.bOffset * 4, a.rows * r * 4) };
  }

  /** The adapter's input: x, or dropout(x) in the `dropped` scratch during a training pass (same mask forward and backward). */
  private adapterInput(r: Recorder, a: AdapterSpec, x: Binding, M: number): Binding {
    const lora = this.lora!;
    const p = lora.layout.settings.dropout;
    if (!this.dropoutActive || p === 0 || !lora.dropped) return x;
    const out = bind(lora.dropped, 0, M * a.inDim * 4);
    this.kernels.lora.dropout(r, { out, inp: x, n: M * a.inDim, p, key: dropoutKey(this.dropoutSeed, a.index) });
    return out;
  }

  private adapterForward(r: Recorder, a: AdapterSpec, o: { out: Binding; x: Binding; M: number; outDim: number }): void {
    const lora = this.lora!;
    const { rank, scale } = lora.layout;
    const { A, B } = this.adapterBindings(a, lora.params);
    const mm = this.kernels.matmul;
    const xd = this.adapterInput(r, a, o.x, o.M);
    mm.matmul(r, { out: bind(lora.h), a: xd, b: A, M: o.M, N: rank, K: a.inDim, transB: true });
    mm.matmul(r, { out: bind(lora.wide), a: bind(lora.h), b: B, M: o.M, N: a.rows, K: rank, transB: true });
    this.kernels.lora.addColumns(r, { out: o.out, inp: bind(lora.wide), rows: o.M, width: a.rows, stride: o.outDim, offset: a.rowStart, scale });
  }

  /** dB += gᵀ·h, dA += (g·B)ᵀ·dropout(x), dx += dropout'((g·B)·A), with g = scale·dy[:, rows] and h recomputed. */
  private adapterBackward(r: Recorder, a: AdapterSpec, o: { dx: Binding; dy: Binding; x: Binding; M: number; outDim: number }): void {
    const lora = this.lora!;
    if (!lora.grads || !lora.dh) throw new Error("model was built without gradients (training: false)");
    const { rank, scale } = lora.layout;
    const { A, B } = this.adapterBindings(a, lora.params);
    const d = this.adapterBindings(a, lora.grads);
    const mm = this.kernels.matmul;
    const g = bind(lora.wide);
    this.kernels.lora.gatherColumns(r, { out: g, inp: o.dy, rows: o.M, width: a.rows, stride: o.outDim, offset: a.rowStart, scale });
    const xd = this.adapterInput(r, a, o.x, o.M);
    mm.matmul(r, { out: bind(lora.h), a: xd, b: A, M: o.M, N: rank, K: a.inDim, transB: true });
    mm.matmul(r, { out: d.B, a: g, b: bind(lora.h), M: a.rows, N: rank, K: o.M, transA: true, accumulate: true });
    mm.matmul(r, { out: bind(lora.dh), a: g, b: B, M: o.M, N: rank, K: a.rows });
    mm.matmul(r, { out: d.A, a: bind(lora.dh), b: xd, M: rank, N: a.inDim, K: o.M, transA: true, accumulate: true });
    if (xd === o.x) {
      mm.matmul(r, { out: o.dx, a: bind(lora.dh), b: A, M: o.M, N: a.inDim, K: rank, accumulate: true });
    } else {
      // dropout(x) is no longer needed: its scratch takes ∂/∂dropout(x), which the same mask carries back to x
      mm.matmul(r, { out: xd, a: bind(lora.dh), b: A, M: o.M, N: a.inDim, K: rank });
      this.kernels.lora.dropout(r, { out: o.dx, inp: xd, n: o.M * a.inDim, p: lora.layout.settings.dropout, key: dropoutKey(this.dropoutSeed, a.index), accumulate: true });
    }
  }

  private norm(r: Recorder, saved: NormActivations, inp: GPUBuffer, role: NormRole, layer: number | null, N: number): void {
    const { C } = this.dims;
    const weight = this.must(`${role}.weight` as LayerRole, layer);
    const eps = this.config.layerNormEps;
    if (this.config.arch.norm === "layer") {
      const bias = this.must(`${role}.bias` as LayerRole, layer);
      this.kernels.layerNorm.forward(r, { out: bind(saved.out), mean: bind(saved.mean!), rstd: bind(saved.rstd), inp: bind(inp), weight, bias, N, C, eps });
    } else {
      const gainOffset = this.config.arch.norm === "rms1p" ? 1 : 0;
      this.kernels.rmsNorm.forward(r, { out: denseView(bind(saved.out), C), rstd: bind(saved.rstd), inp: denseView(bind(inp), C), weight, N, C, eps, gainOffset });
    }
  }

  /** residual = a + b and the norm of it into `saved`, in one kernel (the backward pass needs no change: see `norm`). */
  private residualNorm(r: Recorder, saved: NormActivations, residual: GPUBuffer, a: GPUBuffer, b: GPUBuffer, role: NormRole, layer: number | null, N: number): void {
    const { C } = this.dims;
    const weight = this.must(`${role}.weight` as LayerRole, layer);
    const eps = this.config.layerNormEps;
    const sum = { residual: bind(residual), a: bind(a), b: bind(b), out: bind(saved.out), rstd: bind(saved.rstd), weight, N, C, eps };
    if (this.config.arch.norm === "layer") {
      this.kernels.layerNorm.residualForward(r, { ...sum, mean: bind(saved.mean!), bias: this.must(`${role}.bias` as LayerRole, layer) });
    } else {
      this.kernels.rmsNorm.residualForward(r, { ...sum, gainOffset: this.config.arch.norm === "rms1p" ? 1 : 0 });
    }
  }

  /** dinp += the norm's input gradient for dout; its weight (and bias) gradients +=. */
  private normBackward(r: Recorder, dinp: Binding, dout: Binding, saved: NormActivations, inp: GPUBuffer, role: NormRole, layer: number | null, N: number): void {
    const { C } = this.dims;
    const weight = this.must(`${role}.weight` as LayerRole, layer);
    const dweight = this.baseGrad(`${role}.weight` as LayerRole, layer);
    if (this.config.arch.norm === "layer") {
      const dbias = this.baseGrad(`${role}.bias` as LayerRole, layer, 1);
      this.kernels.layerNorm.backward(r, { dinp, dweight, dbias, dout, inp: bind(inp), weight, mean: bind(saved.mean!), rstd: bind(saved.rstd), N, C });
    } else {
      const gainOffset = this.config.arch.norm === "rms1p" ? 1 : 0;
      this.kernels.rmsNorm.backward(r, { dinp, dweight, dout: denseView(dout, C), inp: denseView(bind(inp), C), weight, rstd: bind(saved.rstd), N, C, gainOffset });
    }
  }

  /** Where attention reads q and k: views of qkv, or the rotated (and normed) copies. */
  private attentionInputs(a: LayerActivations): { q: TokenView; k: TokenView; v: TokenView } {
    const { Q, KV, W } = this.dims;
    const qkv = bind(a.qkv);
    return {
      q: a.q ? denseView(bind(a.q), Q) : { binding: qkv, stride: W, offset: 0 },
      k: a.k ? denseView(bind(a.k), KV) : { binding: qkv, stride: W, offset: Q },
      v: { binding: qkv, stride: W, offset: Q + KV },
    };
  }

  /** q/k norm (per head) and rotary of q or k, from the qkv activations into `out`. */
  private prepareQK(r: Recorder, a: LayerActivations, l: number, which: "q" | "k", N: number, T: number, positions?: Binding): void {
    const { Q, W, NH, KVH, hd, R } = this.dims;
    const H = which === "q" ? NH : KVH;
    const out = which === "q" ? a.q : a.k;
    if (!out || !this.rotary) return;
    let source: TokenView = { binding: bind(a.qkv), stride: W, offset: which === "q" ? 0 : Q };
    if (this.config.arch.qkNorm) {
      const normed = denseView(bind((which === "q" ? this.qNormed : this.kNormed)!), H * hd);
      const weight = this.must(which === "q" ? "qNorm.weight" : "kNorm.weight", l);
      const rstd = bind((which === "q" ? a.qRstd : a.kRstd)!);
      this.kernels.rmsNorm.forward(r, { out: normed, rstd, inp: source, weight, N, C: hd, H, eps: this.config.layerNormEps, gainOffset: 0 });
      source = normed;
    }
    this.kernels.rotary.forward(r, { out: denseView(bind(out), H * hd), inp: source, table: bind(this.rotary), N, T, H, headDim: hd, rotaryDim: R, positions });
  }

  /** Backward of prepareQK: from the gradient of what attention read (dq/dk scratch) into the q or k part of dqkv. */
  private prepareQKBackward(r: Recorder, a: LayerActivations, l: number, which: "q" | "k", N: number, T: number): void {
    const s = this.scratch!;
    const { Q, W, NH, KVH, hd, R } = this.dims;
    const H = which === "q" ? NH : KVH;
    const dRotated = which === "q" ? s.dq : s.dk;
    if (!dRotated || !this.rotary) return;
    const target: TokenView = { binding: bind(s.dqkv), stride: W, offset: which === "q" ? 0 : Q };
    const dNormed = which === "q" ? s.dqNormed : s.dkNormed;
    const rotaryOut = dNormed ? denseView(bind(dNormed), H * hd) : target;
    this.kernels.rotary.backward(r, { out: rotaryOut, inp: denseView(bind(dRotated), H * hd), table: bind(this.rotary), N, T, H, headDim: hd, rotaryDim: R });
    if (dNormed) {
      const role = which === "q" ? "qNorm.weight" : "kNorm.weight";
      this.kernels.rmsNorm.backward(r, {
        dinp: bind(s.dqkv), dweight: this.baseGrad(role, l), dout: denseView(bind(dNormed), H * hd),
        inp: { binding: bind(a.qkv), stride: W, offset: which === "q" ? 0 : Q }, weight: this.must(role, l),
        rstd: bind((which === "q" ? a.qRstd : a.kRstd)!), N, C: hd, H, gainOffset: 0, accumulate: false,
      });
    }
  }

  private activation(r: Recorder, a: LayerActivations, N: number): void {
    const { I } = this.dims;
    const kind = this.config.arch.mlp;
    if (kind === "gelu") this.kernels.gelu.forward(r, { out: bind(a.act), inp: bind(a.fc), n: N * I });
    else this.kernels.gated.forward(r, { kind, out: bind(a.act), inp: bind(a.fc), N, I });
  }

  private activationBackward(r: Recorder, a: LayerActivations, N: number): void {
    const s = this.scratch!;
    const { I } = this.dims;
    const kind = this.config.arch.mlp;
    if (kind === "gelu") this.kernels.gelu.backward(r, { dinp: bind(s.dfc), inp: bind(a.fc), dout: bind(s.dact), n: N * I });
    else this.kernels.gated.backward(r, { kind, dinp: bind(s.dfc), inp: bind(a.fc), dout: bind(s.dact), N, I });
  }

  /** The head's weight: lm_head.weight, or the token embedding when tied. Both are [V, C]. */
  private headWeight(buffer: GPUBuffer = this.params): Binding {
    return this.at("head.weight", null, buffer) ?? this.must("wte", null, buffer);
  }

  /**
   * One block's forward pass, from the previous block's output into this block's activations. recompute: the same
   * pass again in backward (activation checkpointing), which stops short of the output the next block already read.
   */
  private layerForward(r: Recorder, l: number, recompute: boolean): void {
    const { B, T } = this.requireBatch();
    const { C, NH, KVH, hd, W } = this.dims;
    const N = B * T;
    const k = this.kernels;
    const a = this.layers[l];
    const x = l === 0 ? this.encoded : this.layers[l - 1].out;
    // a later layer's norm1 was fused into the residual add before it, except when recomputed (checkpointing)
    if (l === 0 || recompute) this.norm(r, a.norm1, x, "norm1", l, N);
    this.linear(r, { out: bind(a.qkv), x: bind(a.norm1.out), role: "qkv.weight", layer: l, M: N, outDim: W, inDim: C });
    this.prepareQK(r, a, l, "q", N, T);
    this.prepareQK(r, a, l, "k", N, T);
    k.attention.forward(r, { out: bind(a.atty), stats: bind(a.attStats), ...this.attentionInputs(a), B, T, NH, KVH, hs: hd, ...this.attentionOptions() });
    this.blockAfterAttention(r, l, x, N, recompute ? "none" : "fused");
  }

  /**
   * The rest of a block once attention has written a.atty: output projection, residual, MLP (N tokens; the
   * training forward, its recomputation and the cached decoding pass share it). output: "fused" writes the block's
   * output with the next norm applied to it (training forward), "plain" the output alone (cached decoding, whose
   * next layer normalises it itself), "none" nothing past the MLP (a recomputation: the next block already read it).
   */
  private blockAfterAttention(r: Recorder, l: number, x: GPUBuffer, N: number, output: "fused" | "plain" | "none"): void {
    const { C, Q, F, I } = this.dims;
    const k = this.kernels;
    const a = this.layers[l];
    this.linear(r, { out: bind(a.attOut), x: bind(a.atty), role: "o.weight", layer: l, M: N, outDim: C, inDim: Q });
    if (a.attOutNorm) this.norm(r, a.attOutNorm, a.attOut, "attnOutNorm", l, N);
    const attBranch = a.attOutNorm?.out ?? a.attOut;
    if (a.norm2) this.residualNorm(r, a.norm2, a.residual2, x, attBranch, "norm2", l, N);
    else k.residual.add(r, { out: bind(a.residual2), a: bind(x), b: bind(attBranch), n: N * C });
    const mlpInput = a.norm2 ?? a.norm1;
    // GELU rides in the fc product's epilogue (act = gelu(fc), fc kept for backward; see linear); gated MLPs keep their kernel.
    const fusedGelu = this.config.arch.mlp === "gelu";
    this.linear(r, { out: bind(a.fc), x: bind(mlpInput.out), role: "fc.weight", layer: l, M: N, outDim: F, inDim: C, gelu: fusedGelu ? bind(a.act) : undefined });
    if (!fusedGelu) this.activation(r, a, N);
    this.linear(r, { out: bind(a.mlpOut), x: bind(a.act), role: "proj.weight", layer: l, M: N, outDim: C, inDim: I });
    if (a.mlpOutNorm) this.norm(r, a.mlpOutNorm, a.mlpOut, "mlpOutNorm", l, N);
    const mlpBranch = a.mlpOutNorm?.out ?? a.mlpOut;
    if (output === "plain") k.residual.add(r, { out: bind(a.out), a: bind(a.residual2), b: bind(mlpBranch), n: N * C });
    if (output !== "fused") return;
    // the layer's output and the norm after it in one kernel: the next layer's norm1, or the final norm
    const next = this.layers[l + 1];
    if (next) this.residualNorm(r, next.norm1, a.out, a.residual2, mlpBranch, "norm1", l + 1, N);
    else this.residualNorm(r, this.normF, a.out, a.residual2, mlpBranch, "normF", null, N);
  }


  /** What the fused head reads, for the given row list. */
  private headOperands(rows: GPUBuffer, count: number): HeadOperands {
    const { C, V } = this.dims;
    return { ws: this.head, rows: { list: bind(rows), count }, x: bind(this.normF.out), weight: this.headWeight(), bias: this.at("head.bias", null), V, C, softcap: this.config.arch.logitSoftcap };
  }

  // ---- the graph ----

  /**
   * Records the forward pass of the current batch, ending with per-token weighted losses in `losses`. With
   * gradScale ≠ 0 (use 1/Σweights for a mean loss) on a training model, the head's backward runs here too, chunk
   * by chunk while its logits are at hand: the final norm's output gradient goes to the backward scratch and the
   * head weight (and bias) gradients accumulate (+=); `backward` continues from there.
   */
  forward(r: Recorder, gradScale = 0): void {
    const { B, T } = this.requireBatch();
    const { C } = this.dims;
    const { arch } = this.config;
    const N = B * T;
    const k = this.kernels;
    this.dropoutActive = this.options.training && gradScale !== 0;
    k.embedding.forward(r, { out: bind(this.encoded), tokens: bind(this.tokens), wte: this.must("wte", null), wpe: this.at("wpe", null), scale: arch.embeddingScale, B, T, C });
    for (let l = 0; l < this.layers.length; l++) this.layerForward(r, l, false);
    if (this.layers.length === 0) this.norm(r, this.normF, this.encoded, "normF", null, N);
    const gradient = gradScale !== 0 && this.scratch !== null;
    // a frozen base (LoRA) has no head weight or bias gradient: the head's backward then yields dnormF alone
    const grads = gradient ? this.grads : null;
    k.crossEntropy.head(r, {
      ...this.headOperands(this.headRows, this.weightedRows), targets: bind(this.targets), weights: bind(this.lossWeights),
      losses: bind(this.losses, 0, N * 4), gradScale,
      ...(gradient ? { dx: bind(this.scratch!.dln, 0, N * C * 4) } : {}),
      ...(grads ? { dweight: this.headWeight(grads), dbias: this.at("head.bias", null, grads) } : {}),
    });
    this.headGradientRecorded = gradient;
  }

  /**
   * A key/value cache for `rows` sequences of up to `length` tokens (≤ the T this model was built for: the rotary
   * table and the activations are this model's). Passes may feed up to B·T tokens at once.
   */
  createCache(rows: number, length: number): KVCache {
    const { L, KV, C, V } = { L: this.layers.length, ...this.dims };
    if (!(rows >= 1 && length >= 1 && length <= this.options.T)) throw new Error(`cache of ${rows}x${length} for a model built for T=${this.options.T}`);
    const maxTokens = this.options.B * this.options.T;
    const made: GPUBuffer[] = [];
    const f = (label: string, words: number) => {
      const buffer = createStorage(this.gpu, label, words * 4);
      made.push(buffer);
      return buffer;
    };
    const layers = Array.from({ length: L }, (_, l) => ({ k: f(`h${l}.kcache`, rows * length * KV), v: f(`h${l}.vcache`, rows * length * KV) }));
    return {
      rows, length, layers,
      tokens: f("pass tokens", maxTokens), rowOf: f("pass rows", maxTokens), positions: f("pass positions", maxTokens), last: f("pass last", rows),
      gathered: f("pass gathered", rows * C), logits: f("pass logits", rows * V),
      bytes: made.reduce((sum, b) => sum + b.size, 0),
      destroy: () => made.forEach((b) => b.destroy()),
    };
  }

  /**
   * Records one pass of incremental decoding: every token is embedded at its own position, appends its k and v to
   * its row of the cache and attends to that row's keys up to its position; the head runs only on the `last`
   * tokens, into cache.logits [last.length, V]. The blocks are forward()'s own (linear, norms, activations), so
   * families and adapters apply as in training.
   */
  forwardCached(r: Recorder, cache: KVCache, pass: CachedPass): void {
    const N = pass.tokens.length;
    const outRows = pass.last.length;
    const { C, NH, KVH, hd, KV, W, V } = this.dims;
    const { arch, vocabSize } = this.config;
    if (N === 0 || N > this.options.B * this.options.T) throw new Error(`a pass of ${N} tokens (this model runs 1 … ${this.options.B * this.options.T})`);
    if (pass.rows.length !== N || pass.positions.length !== N) throw new Error("pass.tokens, rows and positions must have one entry per token");
    if (outRows > cache.rows) throw new Error(`${outRows} output rows exceed the cache's ${cache.rows}`);
    for (let n = 0; n < N; n++) {
      if (pass.tokens[n] >= vocabSize) throw new UserError(`token id ${pass.tokens[n]} is outside the vocabulary (${vocabSize})`);
      if (pass.rows[n] >= cache.rows || pass.positions[n] >= cache.length) throw new Error(`token ${n} at row ${pass.rows[n]}, position ${pass.positions[n]}: outside the ${cache.rows}x${cache.length} cache`);
    }
    if (pass.last.some((i) => i >= N)) throw new Error("pass.last points past the pass's tokens");
    upload(this.gpu, bind(cache.tokens), pass.tokens);
    upload(this.gpu, bind(cache.rowOf), pass.rows);
    upload(this.gpu, bind(cache.positions), pass.positions);
    upload(this.gpu, bind(cache.last), pass.last);
    this.dropoutActive = false; // inference: adapters apply without dropout
    const k = this.kernels;
    const positions = bind(cache.positions);
    k.embedding.forward(r, { out: bind(this.encoded), tokens: bind(cache.tokens), wte: this.must("wte", null), scale: arch.embeddingScale, B: N, T: 1, C });
    const wpe = this.at("wpe", null);
    if (wpe) k.kvCache.addPositions(r, { out: bind(this.encoded), wpe, positions, N, C });
    this.layers.forEach((a, l) => {
      const x = l === 0 ? this.encoded : this.layers[l - 1].out;
      this.norm(r, a.norm1, x, "norm1", l, N);
      this.linear(r, { out: bind(a.qkv), x: bind(a.norm1.out), role: "qkv.weight", layer: l, M: N, outDim: W, inDim: C });
      this.prepareQK(r, a, l, "q", N, 1, positions);
      this.prepareQK(r, a, l, "k", N, 1, positions);
      const inputs = this.attentionInputs(a);
      const kCache = bind(cache.layers[l].k), vCache = bind(cache.layers[l].v);
      const where = { rows: bind(cache.rowOf), positions, N, maxLength: cache.length };
      k.kvCache.append(r, { kCache, vCache, k: inputs.k, v: inputs.v, width: KV, ...where });
      k.kvCache.attend(r, { out: bind(a.atty), q: inputs.q, kCache, vCache, NH, KVH, hd, scale: arch.attentionScale, softcap: arch.attentionSoftcap, ...where });
      this.blockAfterAttention(r, l, x, N, "plain");
    });
    const last = this.layers.at(-1)?.out ?? this.encoded;
    k.kvCache.gather(r, { out: bind(cache.gathered), x: bind(last), index: bind(cache.last), n: outRows, C });
    this.norm(r, this.normF, cache.gathered, "normF", null, outRows);
    // the head a vocabulary slice at a time (within the binding limit), vocabulary-major [V, outRows]
    k.crossEntropy.compactLogits(r, { out: bind(cache.logits), x: bind(this.normF.out), weight: this.headWeight(), bias: this.at("head.bias", null), count: outRows, V, C, softcap: arch.logitSoftcap });
    this.cachedRows.set(cache, outRows);
  }

  /** The logits of a cached pass's first `rows` output rows, [rows, V], in one read-back. */
  async readCachedLogits(cache: KVCache, rows: number): Promise<Float32Array> {
    const V = this.config.vocabSize;
    const R = this.cachedRows.get(cache) ?? 0;
    if (rows > R) throw new Error(`${rows} rows of logits asked for, the last pass produced ${R}`);
    const block = await readFloat32(this.gpu, bind(cache.logits, 0, R * V * 4)); // [V, R]
    const out = new Float32Array(rows * V);
    for (let i = 0; i < rows; i++) for (let v = 0; v < V; v++) out[i * V + v] = block[v * R + i];
    return out;
  }

  /** Records the backward pass; `forward(r, gradScale ≠ 0)` must come first. Parameter gradients accumulate (+=). */
  backward(r: Recorder): void {
    const { B, T } = this.requireBatch();
    const s = this.scratch;
    if (!s || !this.buckets) throw new Error("model was built without gradients (training: false)");
    if (!this.headGradientRecorded) throw new Error("backward needs a forward with gradScale ≠ 0 on this batch first");
    const { C, NH, KVH, hd, Q, KV, W, I, F } = this.dims;
    const N = B * T;
    const k = this.kernels;
    const grads = this.grads;
    const dres = bind(s.dresidual);
    // the head's backward ran in forward: dln holds ∂loss/∂normF
    r.commandEncoder().clearBuffer(s.dresidual);
    const last = this.layers.at(-1)?.out ?? this.encoded;
    this.normBackward(r, dres, bind(s.dln), this.normF, last, "normF", null, N);
    for (let l = this.layers.length - 1; l >= 0; l--) {
      // checkpointing: the layers share their activations, which hold the last layer's after forward
      if (this.options.checkpointing && l < this.layers.length - 1) this.layerForward(r, l, true);
      const a = this.layers[l];
      const x = l === 0 ? this.encoded : this.layers[l - 1].out;
      // MLP: out = residual2 + proj(act(fc(norm2(residual2))))   [parallel: fc(norm1(x)); sandwich: mlpOutNorm(proj(…))]
      const dmlpOut = this.sandwichBackward(r, a.mlpOutNorm, a.mlpOut, "mlpOutNorm", l, N) ?? dres;
      this.linearBackward(r, { dx: bind(s.dact), dy: dmlpOut, x: bind(a.act), role: "proj.weight", layer: l, M: N, outDim: C, inDim: I });
      this.activationBackward(r, a, N);
      const mlpInput = a.norm2 ?? a.norm1;
      this.linearBackward(r, { dx: bind(s.dln), dy: bind(s.dfc), x: bind(mlpInput.out), role: "fc.weight", layer: l, M: N, outDim: F, inDim: C });
      // sequential: dres becomes ∂/∂residual2; parallel: dres already is ∂/∂x's residual path and dln carries on
      if (a.norm2) this.normBackward(r, dres, bind(s.dln), a.norm2, a.residual2, "norm2", l, N);
      // Attention: residual2 = x + o(attention(qkv(norm1(x))))
      const dattOut = this.sandwichBackward(r, a.attOutNorm, a.attOut, "attnOutNorm", l, N) ?? dres;
      this.linearBackward(r, { dx: bind(s.datty), dy: dattOut, x: bind(a.atty), role: "o.weight", layer: l, M: N, outDim: C, inDim: Q });
      const inputs = this.attentionInputs(a);
      const dq = s.dq ? denseView(bind(s.dq), Q) : { binding: bind(s.dqkv), stride: W, offset: 0 };
      const dk = s.dk ? denseView(bind(s.dk), KV) : { binding: bind(s.dqkv), stride: W, offset: Q };
      const dv = { binding: bind(s.dqkv), stride: W, offset: Q + KV };
      k.attention.backward(r, { dq, dk, dv, dout: bind(s.datty), stats: bind(a.attStats), delta: bind(s.attDelta), ...inputs, B, T, NH, KVH, hs: hd, ...this.attentionOptions() });
      this.prepareQKBackward(r, a, l, "q", N, T);
      this.prepareQKBackward(r, a, l, "k", N, T);
      this.linearBackward(r, { dx: bind(s.dln), dy: bind(s.dqkv), x: bind(a.norm1.out), role: "qkv.weight", layer: l, M: N, outDim: W, inDim: C, accumulateDx: !a.norm2 });
      this.normBackward(r, dres, bind(s.dln), a.norm1, x, "norm1", l, N);
    }
    // dres now holds the gradient with respect to the input embeddings (scale·wte[token] (+ wpe[t])).
    if (grads) k.embedding.backward(r, { dwte: this.must("wte", null, grads), dwpe: this.at("wpe", null, grads), scale: this.config.arch.embeddingScale, dout: dres, buckets: this.buckets, B, T, C });
  }

  /** Attention scale and soft-capping of the family (defaults otherwise). */
  private attentionOptions(): { scale?: number; softcap?: number } {
    const { attentionScale, attentionSoftcap } = this.config.arch;
    return { scale: attentionScale, softcap: attentionSoftcap };
  }

  /** Backward of a sandwich norm on a branch output: its input gradient (from dres) in the dnormed scratch. */
  private sandwichBackward(r: Recorder, saved: NormActivations | null, inp: GPUBuffer, role: NormRole, layer: number, N: number): Binding | undefined {
    const s = this.scratch!;
    if (!saved || !s.dnormed) return undefined;
    r.commandEncoder().clearBuffer(s.dnormed);
    this.normBackward(r, bind(s.dnormed), bind(s.dresidual), saved, inp, role, layer, N);
    return bind(s.dnormed);
  }

  /** Gradient of the loss with respect to the input embeddings, [B,T,C], valid after a backward pass. */
  async inputEmbeddingGradient(): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    if (!this.scratch) throw new Error("model was built without gradients");
    return readFloat32(this.gpu, bind(this.scratch.dresidual, 0, B * T * this.config.nEmbd * 4));
  }

  /** The input embeddings themselves (after any embedding scale), [B,T,C], valid after a forward pass. */
  async inputEmbeddings(): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    return readFloat32(this.gpu, bind(this.encoded, 0, B * T * this.config.nEmbd * 4));
  }

  /** Starts a step: clears the gradients and the step's loss sum (both accumulate over micro-batches). */
  zeroGradients(r: Recorder): void {
    r.commandEncoder().clearBuffer(this.trainable.grads);
    if (this.frozenSink) r.commandEncoder().clearBuffer(this.frozenSink);
    r.commandEncoder().clearBuffer(this.status, STATUS.lossSum * 4, 4);
  }

  /** Clears every status word, the sticky diverged flag included (a new training run on this model). */
  resetStepStatus(): void {
    upload(this.gpu, bind(this.status), new Float32Array(STATUS.words));
  }

  private get status(): GPUBuffer {
    if (!this.stepStatus) throw new Error("model was built without gradients");
    return this.stepStatus;
  }

  /** Adds the current batch's weighted losses (after forward) to the step's loss sum, on the GPU. */
  recordLossSum(r: Recorder): void {
    const { B, T } = this.requireBatch();
    this.kernels.guard.addSum(r, { status: bind(this.status), terms: bind(this.losses, 0, B * T * 4), n: B * T });
  }

  /**
   * Records ‖grad‖² into the step status, then the divergence guard: a non-finite loss sum or norm (or an earlier
   * divergence) sets the sticky flag and makes the next `recordAdamW` leave the weights alone. Nothing waits.
   */
  recordGradNorm(r: Recorder): void {
    const status = bind(this.status);
    const t = this.trainable;
    this.kernels.adamw.gradNormSquared(r, { out: status, grads: bind(t.grads), n: t.size });
    this.kernels.guard.check(r, { status });
  }

  /** The step status words (a read-back that waits for the GPU; the trainer reads them through its own ring instead). */
  async readStepStatus(): Promise<Float32Array> {
    return readFloat32(this.gpu, bind(this.status, 0, STATUS.words * 4));
  }

  /** Records one AdamW step: weight decay on the decayed range only, clipping by the global norm recorded before. */
  recordAdamW(r: Recorder, o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; maxNorm: number }): void {
    if (!this.stepStatus) throw new Error("model was built without optimizer state");
    const t = this.trainable;
    const ranges = [
      { start: 0, n: t.decayEnd, weightDecay: o.weightDecay },
      { start: t.decayEnd, n: t.size - t.decayEnd, weightDecay: 0 },
    ];
    for (const range of ranges) {
      if (range.n === 0) continue;
      const at = (buffer: GPUBuffer) => bind(buffer, range.start * 4, range.n * 4);
      this.kernels.adamw.adamw(r, {
        params: at(t.params), grads: at(t.grads), m: at(t.m), v: at(t.v), n: range.n,
        lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: range.weightDecay, step: o.step,
        normSquared: bind(this.stepStatus), maxNorm: o.maxNorm,
      });
    }
  }

  /** Per-position weighted losses of the current batch (after forward). */
  async readLosses(): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    return readFloat32(this.gpu, bind(this.losses, 0, B * T * 4));
  }

  /**
   * Logits (after any soft-capping) at the given positions b·T + t of the current batch, [positions.length, V]:
   * the head run on the final norm's output of the last forward (with the current weights), a chunk of rows at a
   * time, so no [B·T, V] buffer is ever needed on the GPU.
   */
  async readLogitsRows(positions: ArrayLike<number>): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    const V = this.config.vocabSize;
    const n = positions.length;
    const rows = Uint32Array.from(positions);
    for (const i of rows) if (i >= B * T) throw new Error(`position ${i} is outside the ${B}x${T} batch`);
    const out = new Float32Array(n * V);
    if (n === 0) return out;
    upload(this.gpu, bind(this.queryRows), rows);
    const r = (this.logitsRecorder ??= new Recorder(this.gpu));
    const operands = this.headOperands(this.queryRows, n);
    for (let first = 0; first < n; first += this.head.rowChunk) {
      const count = Math.min(this.head.rowChunk, n - first);
      this.kernels.crossEntropy.logits(r, { ...operands, first, count });
      r.submit();
      const chunk = await readFloat32(this.gpu, bind(this.head.logits.buffer, 0, V * count * 4)); // [V, count]
      for (let i = 0; i < count; i++) {
        const row = out.subarray((first + i) * V, (first + i + 1) * V);
        for (let v = 0; v < V; v++) row[v] = chunk[v * count + i];
      }
    }
    return out;
  }

  /** Logits of the current batch, [B,T,V] (see readLogitsRows). */
  async readLogits(): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    return this.readLogitsRows(Array.from({ length: B * T }, (_, i) => i));
  }

  /** Logits at one position [V] (see readLogitsRows). */
  async readLogitsAt(b: number, t: number): Promise<Float32Array> {
    const { T } = this.requireBatch();
    return this.readLogitsRows([b * T + t]);
  }

  private requireBatch(): { B: number; T: number } {
    if (!this.current) throw new Error("no batch set: call setBatch first");
    return this.current;
  }

  destroy(): void {
    const norms = (n: NormActivations | null) => (n ? [n.out, n.mean, n.rstd] : []);
    const buffers: (GPUBuffer | null)[] = [
      ...this.pages.map((p) => p.buffer), this.grads, this.m, this.v, this.stepStatus, this.tokens, this.targets, this.lossWeights,
      this.encoded, ...norms(this.normF), this.qNormed, this.kNormed, this.rotary, this.headRows, this.queryRows,
      this.head.x.buffer, this.head.logits.buffer, this.head.dx?.buffer ?? null, this.losses,
      ...this.layers.flatMap((a) => [
        ...norms(a.norm1), ...norms(a.norm2), ...norms(a.attOutNorm), ...norms(a.mlpOutNorm), a.qkv, a.q, a.k, a.qRstd, a.kRstd,
        a.attStats, a.atty, a.attOut, a.residual2, a.fc, a.act, a.mlpOut, a.out,
      ]),
      ...(this.scratch ? Object.values(this.scratch) : []),
      ...(this.lora ? [this.lora.params, this.lora.grads, this.lora.m, this.lora.v, this.lora.h, this.lora.dh, this.lora.wide, this.lora.dropped] : []),
      this.frozenSink,
    ];
    for (const b of buffers) b?.destroy();
  }
}
