/**
 * GPT-2 on the GPU: the forward and backward graph over the kernels of src/gpu/kernels, llm.c style — one flat
 * parameter buffer (and gradient, AdamW m and v buffers of the same layout), activations saved per layer for the
 * backward pass, and a single residual-gradient buffer that LayerNorm backward accumulates into (so the residual
 * fan-out needs no extra kernel).
 *
 * A model is built for a maximum batch shape (B, T); any smaller B·T runs with the same buffers, so bind groups
 * stay cached across steps and nothing is allocated per step.
 */
import type { Gpu } from "../gpu/device.ts";
import { bind, createStorage, readFloat32, upload } from "../gpu/buffers.ts";
import type { Binding, Recorder } from "../gpu/recorder.ts";
import type { EmbeddingBuckets, Kernels } from "../gpu/kernels/index.ts";
import { UserError } from "../errors.ts";
import type { ModelConfig } from "./config.ts";
import { paramLayout, type ParamLayout } from "./params.ts";

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

interface LayerActivations {
  ln1: GPUBuffer; ln1Mean: GPUBuffer; ln1Rstd: GPUBuffer;
  qkv: GPUBuffer; atty: GPUBuffer; att: GPUBuffer; attproj: GPUBuffer; residual2: GPUBuffer;
  ln2: GPUBuffer; ln2Mean: GPUBuffer; ln2Rstd: GPUBuffer;
  fch: GPUBuffer; fchGelu: GPUBuffer; fcproj: GPUBuffer; residual3: GPUBuffer;
}

/** Scratch for one layer's backward pass, reused by every layer (layers are processed one after another). */
interface BackwardScratch {
  dresidual: GPUBuffer; dln: GPUBuffer; dqkv: GPUBuffer; datt: GPUBuffer; datty: GPUBuffer; dfch: GPUBuffer; dfchGelu: GPUBuffer;
}

export interface ModelOptions {
  /** Maximum batch rows and sequence length this instance will run. */
  B: number;
  T: number;
  /** Allocate gradients, AdamW state and backward scratch. */
  training: boolean;
}

export class Gpt2 {
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
  private readonly lnf: GPUBuffer;
  private readonly lnfMean: GPUBuffer;
  private readonly lnfRstd: GPUBuffer;
  /** Logits after forward; dlogits after a forward with gradScale ≠ 0 (the cross-entropy kernel overwrites them). */
  readonly logits: GPUBuffer;
  readonly losses: GPUBuffer;
  readonly normSquared: GPUBuffer | null;
  private readonly scratch: BackwardScratch | null;
  private readonly buckets: EmbeddingBuckets | null;
  private current: { B: number; T: number } | null = null;
  /** Bytes of every GPU buffer this model allocated (the trainer's GPU memory, kernel scratch aside). */
  readonly allocatedBytes: number;

  constructor(
    readonly gpu: Gpu,
    readonly kernels: Kernels,
    readonly config: ModelConfig,
    readonly options: ModelOptions,
  ) {
    const { B, T } = options;
    const { nLayer: L, nHead: NH, nEmbd: C, vocabSize: V, nPositions } = config;
    if (T > nPositions) throw new UserError(`sequence length ${T} exceeds the model's n_positions (${nPositions})`);
    this.layout = paramLayout(config);
    let allocated = 0;
    const f = (label: string, floats: number) => {
      const buffer = createStorage(gpu, label, floats * 4);
      allocated += buffer.size;
      return buffer;
    };
    const N = B * T;
    this.params = f("params", this.layout.size);
    this.grads = options.training ? f("grads", this.layout.size) : null;
    this.m = options.training ? f("adam.m", this.layout.size) : null;
    this.v = options.training ? f("adam.v", this.layout.size) : null;
    this.normSquared = options.training ? f("grad norm²", 1) : null;
    this.tokens = f("tokens", N);
    this.targets = f("targets", N);
    this.lossWeights = f("loss weights", N);
    this.encoded = f("encoded", N * C);
    this.layers = Array.from({ length: L }, (_, l) => ({
      ln1: f(`h${l}.ln1`, N * C), ln1Mean: f(`h${l}.ln1.mean`, N), ln1Rstd: f(`h${l}.ln1.rstd`, N),
      qkv: f(`h${l}.qkv`, N * 3 * C), atty: f(`h${l}.atty`, N * C), att: f(`h${l}.att`, B * NH * T * T),
      attproj: f(`h${l}.attproj`, N * C), residual2: f(`h${l}.residual2`, N * C),
      ln2: f(`h${l}.ln2`, N * C), ln2Mean: f(`h${l}.ln2.mean`, N), ln2Rstd: f(`h${l}.ln2.rstd`, N),
      fch: f(`h${l}.fch`, N * 4 * C), fchGelu: f(`h${l}.fch.gelu`, N * 4 * C),
      fcproj: f(`h${l}.fcproj`, N * C), residual3: f(`h${l}.residual3`, N * C),
    }));
    this.lnf = f("lnf", N * C);
    this.lnfMean = f("lnf.mean", N);
    this.lnfRstd = f("lnf.rstd", N);
    this.logits = f("logits", N * V);
    this.losses = f("losses", N);
    this.scratch = options.training
      ? {
          dresidual: f("d.residual", N * C), dln: f("d.ln", N * C), dqkv: f("d.qkv", N * 3 * C),
          datt: f("d.att", B * NH * T * T), datty: f("d.atty", N * C), dfch: f("d.fch", N * 4 * C),
          dfchGelu: f("d.fch.gelu", N * 4 * C),
        }
      : null;
    this.buckets = options.training ? kernels.embedding.createBuckets(N) : null;
    this.allocatedBytes = allocated;
  }

  /** A parameter tensor (HF name) as a binding into the flat buffer. */
  param(name: string, buffer: GPUBuffer = this.params): Binding {
    const t = this.layout.byName.get(name);
    if (!t) throw new Error(`no parameter ${name}`);
    return bind(buffer, t.offset * 4, t.size * 4);
  }

  private grad(name: string): Binding {
    if (!this.grads) throw new Error("model was built without gradients (training: false)");
    return this.param(name, this.grads);
  }

  setParameters(flat: Float32Array): void {
    if (flat.length !== this.layout.size) {
      throw new Error(`parameter vector has ${flat.length} floats, layout needs ${this.layout.size}`);
    }
    upload(this.gpu, bind(this.params), flat);
  }

  async getParameters(): Promise<Float32Array> {
    return readFloat32(this.gpu, bind(this.params, 0, this.layout.size * 4));
  }

  async getGradients(): Promise<Float32Array> {
    if (!this.grads) throw new Error("model was built without gradients");
    return readFloat32(this.gpu, bind(this.grads, 0, this.layout.size * 4));
  }

  async getOptimizerState(): Promise<{ m: Float32Array; v: Float32Array }> {
    if (!this.m || !this.v) throw new Error("model was built without optimizer state");
    const bytes = this.layout.size * 4;
    return { m: await readFloat32(this.gpu, bind(this.m, 0, bytes)), v: await readFloat32(this.gpu, bind(this.v, 0, bytes)) };
  }

  setOptimizerState(m: Float32Array, v: Float32Array): void {
    if (!this.m || !this.v) throw new Error("model was built without optimizer state");
    upload(this.gpu, bind(this.m), m);
    upload(this.gpu, bind(this.v), v);
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
    this.buckets?.update(batch.tokens);
    this.current = { B, T };
  }

  /**
   * Records the forward pass of the current batch, ending with per-token weighted losses in `losses`. With
   * gradScale ≠ 0 the logits are replaced by dlogits, scaled by gradScale (use 1/Σweights for a mean loss).
   */
  forward(r: Recorder, gradScale = 0): void {
    const { B, T } = this.requireBatch();
    const { nLayer: L, nHead: NH, nEmbd: C, vocabSize: V } = this.config;
    const N = B * T;
    const k = this.kernels;
    const w = (name: string) => this.param(name);
    k.embedding.forward(r, { out: bind(this.encoded), tokens: bind(this.tokens), wte: w("transformer.wte.weight"), wpe: w("transformer.wpe.weight"), B, T, C });
    for (let l = 0; l < L; l++) {
      const a = this.layers[l];
      const h = `transformer.h.${l}`;
      const residual = l === 0 ? this.encoded : this.layers[l - 1].residual3;
      k.layerNorm.forward(r, { out: bind(a.ln1), mean: bind(a.ln1Mean), rstd: bind(a.ln1Rstd), inp: bind(residual), weight: w(`${h}.ln_1.weight`), bias: w(`${h}.ln_1.bias`), N, C, eps: this.config.layerNormEps });
      k.matmul.matmul(r, { out: bind(a.qkv), a: bind(a.ln1), b: w(`${h}.attn.c_attn.weight`), bias: w(`${h}.attn.c_attn.bias`), M: N, N: 3 * C, K: C });
      k.attention.forward(r, { out: bind(a.atty), att: bind(a.att), qkv: bind(a.qkv), B, T, C, NH });
      k.matmul.matmul(r, { out: bind(a.attproj), a: bind(a.atty), b: w(`${h}.attn.c_proj.weight`), bias: w(`${h}.attn.c_proj.bias`), M: N, N: C, K: C });
      k.residual.add(r, { out: bind(a.residual2), a: bind(residual), b: bind(a.attproj), n: N * C });
      k.layerNorm.forward(r, { out: bind(a.ln2), mean: bind(a.ln2Mean), rstd: bind(a.ln2Rstd), inp: bind(a.residual2), weight: w(`${h}.ln_2.weight`), bias: w(`${h}.ln_2.bias`), N, C, eps: this.config.layerNormEps });
      k.matmul.matmul(r, { out: bind(a.fch), a: bind(a.ln2), b: w(`${h}.mlp.c_fc.weight`), bias: w(`${h}.mlp.c_fc.bias`), M: N, N: 4 * C, K: C });
      k.gelu.forward(r, { out: bind(a.fchGelu), inp: bind(a.fch), n: N * 4 * C });
      k.matmul.matmul(r, { out: bind(a.fcproj), a: bind(a.fchGelu), b: w(`${h}.mlp.c_proj.weight`), bias: w(`${h}.mlp.c_proj.bias`), M: N, N: C, K: 4 * C });
      k.residual.add(r, { out: bind(a.residual3), a: bind(a.residual2), b: bind(a.fcproj), n: N * C });
    }
    const last = L > 0 ? this.layers[L - 1].residual3 : this.encoded;
    k.layerNorm.forward(r, { out: bind(this.lnf), mean: bind(this.lnfMean), rstd: bind(this.lnfRstd), inp: bind(last), weight: w("transformer.ln_f.weight"), bias: w("transformer.ln_f.bias"), N, C, eps: this.config.layerNormEps });
    // The LM head is tied to the token embedding: logits = lnf · wteᵀ.
    k.matmul.matmul(r, { out: bind(this.logits), a: bind(this.lnf), b: w("transformer.wte.weight"), M: N, N: V, K: C, transB: true });
    k.crossEntropy.crossEntropy(r, { logits: bind(this.logits), losses: bind(this.losses), targets: bind(this.targets), weights: bind(this.lossWeights), N, V, gradScale });
  }

  /** Records the backward pass; `forward(r, gradScale ≠ 0)` must come first. Parameter gradients accumulate (+=). */
  backward(r: Recorder): void {
    const { B, T } = this.requireBatch();
    const s = this.scratch;
    if (!s || !this.buckets) throw new Error("model was built without gradients (training: false)");
    const { nLayer: L, nHead: NH, nEmbd: C, vocabSize: V } = this.config;
    const N = B * T;
    const k = this.kernels;
    const w = (name: string) => this.param(name);
    const g = (name: string) => this.grad(name);
    const dres = bind(s.dresidual);
    // LM head (tied): dlnf = dlogits · wte ; dwte += dlogitsᵀ · lnf
    k.matmul.matmul(r, { out: bind(s.dln), a: bind(this.logits), b: w("transformer.wte.weight"), M: N, N: C, K: V });
    k.matmul.matmul(r, { out: g("transformer.wte.weight"), a: bind(this.logits), b: bind(this.lnf), M: V, N: C, K: N, transA: true, accumulate: true });
    r.commandEncoder().clearBuffer(s.dresidual);
    const last = L > 0 ? this.layers[L - 1].residual3 : this.encoded;
    k.layerNorm.backward(r, { dinp: dres, dweight: g("transformer.ln_f.weight"), dbias: g("transformer.ln_f.bias"), dout: bind(s.dln), inp: bind(last), weight: w("transformer.ln_f.weight"), mean: bind(this.lnfMean), rstd: bind(this.lnfRstd), N, C });
    for (let l = L - 1; l >= 0; l--) {
      const a = this.layers[l];
      const h = `transformer.h.${l}`;
      const residual = l === 0 ? this.encoded : this.layers[l - 1].residual3;
      // MLP: residual3 = residual2 + c_proj(gelu(c_fc(ln2(residual2))))
      k.matmul.matmul(r, { out: bind(s.dfchGelu), a: dres, b: w(`${h}.mlp.c_proj.weight`), M: N, N: 4 * C, K: C, transB: true });
      k.matmul.matmul(r, { out: g(`${h}.mlp.c_proj.weight`), a: bind(a.fchGelu), b: dres, M: 4 * C, N: C, K: N, transA: true, accumulate: true });
      k.matmul.biasBackward(r, { dbias: g(`${h}.mlp.c_proj.bias`), dout: dres, M: N, N: C });
      k.gelu.backward(r, { dinp: bind(s.dfch), inp: bind(a.fch), dout: bind(s.dfchGelu), n: N * 4 * C });
      k.matmul.matmul(r, { out: bind(s.dln), a: bind(s.dfch), b: w(`${h}.mlp.c_fc.weight`), M: N, N: C, K: 4 * C, transB: true });
      k.matmul.matmul(r, { out: g(`${h}.mlp.c_fc.weight`), a: bind(a.ln2), b: bind(s.dfch), M: C, N: 4 * C, K: N, transA: true, accumulate: true });
      k.matmul.biasBackward(r, { dbias: g(`${h}.mlp.c_fc.bias`), dout: bind(s.dfch), M: N, N: 4 * C });
      k.layerNorm.backward(r, { dinp: dres, dweight: g(`${h}.ln_2.weight`), dbias: g(`${h}.ln_2.bias`), dout: bind(s.dln), inp: bind(a.residual2), weight: w(`${h}.ln_2.weight`), mean: bind(a.ln2Mean), rstd: bind(a.ln2Rstd), N, C });
      // Attention: residual2 = residual + c_proj(attention(c_attn(ln1(residual))))
      k.matmul.matmul(r, { out: bind(s.datty), a: dres, b: w(`${h}.attn.c_proj.weight`), M: N, N: C, K: C, transB: true });
      k.matmul.matmul(r, { out: g(`${h}.attn.c_proj.weight`), a: bind(a.atty), b: dres, M: C, N: C, K: N, transA: true, accumulate: true });
      k.matmul.biasBackward(r, { dbias: g(`${h}.attn.c_proj.bias`), dout: dres, M: N, N: C });
      k.attention.backward(r, { dqkv: bind(s.dqkv), datt: bind(s.datt), dout: bind(s.datty), qkv: bind(a.qkv), att: bind(a.att), B, T, C, NH });
      k.matmul.matmul(r, { out: bind(s.dln), a: bind(s.dqkv), b: w(`${h}.attn.c_attn.weight`), M: N, N: C, K: 3 * C, transB: true });
      k.matmul.matmul(r, { out: g(`${h}.attn.c_attn.weight`), a: bind(a.ln1), b: bind(s.dqkv), M: C, N: 3 * C, K: N, transA: true, accumulate: true });
      k.matmul.biasBackward(r, { dbias: g(`${h}.attn.c_attn.bias`), dout: bind(s.dqkv), M: N, N: 3 * C });
      k.layerNorm.backward(r, { dinp: dres, dweight: g(`${h}.ln_1.weight`), dbias: g(`${h}.ln_1.bias`), dout: bind(s.dln), inp: bind(residual), weight: w(`${h}.ln_1.weight`), mean: bind(a.ln1Mean), rstd: bind(a.ln1Rstd), N, C });
    }
    // dres now holds the gradient with respect to the input embeddings (wte[token] + wpe[t]).
    k.embedding.backward(r, { dwte: g("transformer.wte.weight"), dwpe: g("transformer.wpe.weight"), dout: dres, buckets: this.buckets, B, T, C });
  }

  /** Gradient of the loss with respect to the input embeddings, [B,T,C], valid after a backward pass. */
  async inputEmbeddingGradient(): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    if (!this.scratch) throw new Error("model was built without gradients");
    return readFloat32(this.gpu, bind(this.scratch.dresidual, 0, B * T * this.config.nEmbd * 4));
  }

  /** The input embeddings themselves, [B,T,C], valid after a forward pass. */
  async inputEmbeddings(): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    return readFloat32(this.gpu, bind(this.encoded, 0, B * T * this.config.nEmbd * 4));
  }

  zeroGradients(r: Recorder): void {
    if (!this.grads) throw new Error("model was built without gradients");
    r.commandEncoder().clearBuffer(this.grads);
  }

  /** Records ‖grad‖² into normSquared (read it with `readNormSquared` to check for NaN/Inf before stepping). */
  recordGradNorm(r: Recorder): void {
    if (!this.grads || !this.normSquared) throw new Error("model was built without gradients");
    this.kernels.adamw.gradNormSquared(r, { out: bind(this.normSquared), grads: bind(this.grads), n: this.layout.size });
  }

  async readNormSquared(): Promise<number> {
    if (!this.normSquared) throw new Error("model was built without gradients");
    return (await readFloat32(this.gpu, bind(this.normSquared, 0, 4)))[0];
  }

  /** Records one AdamW step: weight decay on the decayed range only, clipping by the global norm recorded before. */
  recordAdamW(r: Recorder, o: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; maxNorm: number }): void {
    if (!this.grads || !this.m || !this.v || !this.normSquared) throw new Error("model was built without optimizer state");
    const ranges = [
      { start: 0, n: this.layout.decayEnd, weightDecay: o.weightDecay },
      { start: this.layout.decayEnd, n: this.layout.size - this.layout.decayEnd, weightDecay: 0 },
    ];
    for (const range of ranges) {
      if (range.n === 0) continue;
      const at = (buffer: GPUBuffer) => bind(buffer, range.start * 4, range.n * 4);
      this.kernels.adamw.adamw(r, {
        params: at(this.params), grads: at(this.grads), m: at(this.m), v: at(this.v), n: range.n,
        lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: range.weightDecay, step: o.step,
        normSquared: bind(this.normSquared), maxNorm: o.maxNorm,
      });
    }
  }

  /** Per-position weighted losses of the current batch (after forward). */
  async readLosses(): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    return readFloat32(this.gpu, bind(this.losses, 0, B * T * 4));
  }

  /** Logits of the current batch, [B,T,V] (after a forward with gradScale = 0). */
  async readLogits(): Promise<Float32Array> {
    const { B, T } = this.requireBatch();
    return readFloat32(this.gpu, bind(this.logits, 0, B * T * this.config.vocabSize * 4));
  }

  /** Logits at one position [V] (after a forward with gradScale = 0). */
  async readLogitsAt(b: number, t: number): Promise<Float32Array> {
    const { T } = this.requireBatch();
    const V = this.config.vocabSize;
    return readFloat32(this.gpu, bind(this.logits, (b * T + t) * V * 4, V * 4));
  }

  private requireBatch(): { B: number; T: number } {
    if (!this.current) throw new Error("no batch set: call setBatch first");
    return this.current;
  }

  destroy(): void {
    const buffers: (GPUBuffer | null)[] = [
      this.params, this.grads, this.m, this.v, this.normSquared, this.tokens, this.targets, this.lossWeights,
      this.encoded, this.lnf, this.lnfMean, this.lnfRstd, this.logits, this.losses,
      ...this.layers.flatMap((a) => Object.values(a)),
      ...(this.scratch ? Object.values(this.scratch) : []),
    ];
    for (const b of buffers) b?.destroy();
  }
}
