import type { AttentionShape } from "../gpu/kernels/index.ts";

/**
 * Float64 reference implementations of every GPU kernel (the contract in src/gpu/kernels/index.ts), written in the
 * plain loop style of llm.c's train_gpt2.c. They are slow and obvious on purpose: the WGSL kernels are tested
 * against them, and src/reference/decoder.ts composes them into a whole decoder that is tested against PyTorch.
 *
 * All tensors are row-major. Outputs are freshly allocated (the GPU's "+=" accumulation is the caller's business),
 * except adamwStep, which updates its arrays in place like the optimizer it mirrors.
 */

/** out[M,N] = op(a)·op(b) + bias; a is [M,K] ([K,M] if transA), b is [K,N] ([N,K] if transB). */
export function matmul(
  a: Float64Array,
  b: Float64Array,
  bias: Float64Array | null,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let sum = bias ? bias[j] : 0;
      for (let k = 0; k < K; k++) {
        const aik = transA ? a[k * M + i] : a[i * K + k];
        const bkj = transB ? b[j * K + k] : b[k * N + j];
        sum += aik * bkj;
      }
      out[i * N + j] = sum;
    }
  }
  return out;
}

/** dbias[N] = Σ over the M rows of dout[M,N]. */
export function biasBackward(dout: Float64Array, M: number, N: number): Float64Array {
  const dbias = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) dbias[j] += dout[i * N + j];
  }
  return dbias;
}

/**
 * Weighted softmax cross-entropy over rows of logits[N,V]:
 * losses[i] = w_i·(logsumexp(logits_i) − logits_i[target_i]); dlogits_i = w_i·gradScale·(softmax(logits_i) − onehot).
 * gradScale is how the caller turns a sum of losses into the mean it optimises (e.g. 1/Σw).
 */
export function crossEntropy(
  logits: Float64Array,
  targets: Uint32Array,
  weights: Float64Array,
  N: number,
  V: number,
  gradScale: number,
): { losses: Float64Array; dlogits: Float64Array } {
  const losses = new Float64Array(N);
  const dlogits = new Float64Array(N * V);
  for (let i = 0; i < N; i++) {
    const row = i * V;
    let max = -Infinity;
    for (let v = 0; v < V; v++) max = Math.max(max, logits[row + v]);
    let sumExp = 0;
    for (let v = 0; v < V; v++) sumExp += Math.exp(logits[row + v] - max);
    const logSumExp = max + Math.log(sumExp);
    const target = targets[i];
    losses[i] = weights[i] * (logSumExp - logits[row + target]);
    const scale = weights[i] * gradScale;
    for (let v = 0; v < V; v++) {
      const prob = Math.exp(logits[row + v] - logSumExp);
      dlogits[row + v] = scale * (prob - (v === target ? 1 : 0));
    }
  }
  return { losses, dlogits };
}

/**
 * The LM head with its cross-entropy and backward, as the fused GPU head computes it (crossentropy.ts):
 * logits = softcap(x·Wᵀ + bias) (cap 0: none), losses and dlogits by crossEntropy, then through the cap
 * dx = dz·W, dweight = dzᵀ·x, dbias = Σ_rows dz. x is [N,C], weight [V,C].
 */
export function lmHead(
  x: Float64Array, weight: Float64Array, bias: Float64Array | null, targets: Uint32Array, weights: Float64Array,
  N: number, V: number, C: number, gradScale: number, cap = 0,
): { logits: Float64Array; losses: Float64Array; dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const raw = matmul(x, weight, bias, N, V, C, false, true);
  const logits = cap > 0 ? softcap(raw, cap) : raw;
  const ce = crossEntropy(logits, targets, weights, N, V, gradScale);
  const dz = cap > 0 ? softcapBackward(ce.dlogits, raw, cap) : ce.dlogits;
  return {
    logits,
    losses: ce.losses,
    dx: matmul(dz, weight, null, N, C, V, false, false),
    dweight: matmul(dz, x, null, V, C, N, true, false),
    dbias: biasBackward(dz, N, V),
  };
}

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for the bias corrections. */
  step: number;
  /** Gradients are multiplied by this first (global-norm clipping: maxNorm/(‖g‖+1e-6) when ‖g‖ > maxNorm, else 1). */
  clipScale: number;
}

/** One torch.optim.AdamW step (decoupled weight decay), in place on params, m and v. */
export function adamwStep(params: Float64Array, grads: Float64Array, m: Float64Array, v: Float64Array, o: AdamWOptions): void {
  const biasCorrection1 = 1 - Math.pow(o.beta1, o.step);
  const biasCorrection2 = 1 - Math.pow(o.beta2, o.step);
  for (let i = 0; i < params.length; i++) {
    const g = grads[i] * o.clipScale;
    m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
    v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
    const mHat = m[i] / biasCorrection1;
    const vHat = v[i] / biasCorrection2;
    params[i] -= o.lr * (mHat / (Math.sqrt(vHat) + o.eps) + o.weightDecay * params[i]);
  }
}

/** Σ g² — the square of the global gradient norm that clipping uses. */
export function gradNormSquared(grads: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < grads.length; i++) sum += grads[i] * grads[i];
  return sum;
}

/** The clip factor torch.nn.utils.clip_grad_norm_ applies for a given ‖g‖² (1 when no clipping is needed). */
export function clipScale(normSquared: number, maxNorm: number): number {
  const norm = Math.sqrt(normSquared);
  return maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}

/** Per row of inp[N,C]: out = (x − mean)·rstd·weight + bias, with the biased variance; mean and rstd saved for backward. */
export function layerNormForward(
  inp: Float64Array,
  weight: Float64Array,
  bias: Float64Array,
  N: number,
  C: number,
  eps: number,
): { out: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const out = new Float64Array(N * C);
  const mean = new Float64Array(N);
  const rstd = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const row = i * C;
    let m = 0;
    for (let c = 0; c < C; c++) m += inp[row + c];
    m /= C;
    let variance = 0;
    for (let c = 0; c < C; c++) variance += (inp[row + c] - m) ** 2;
    variance /= C;
    const s = 1 / Math.sqrt(variance + eps);
    for (let c = 0; c < C; c++) out[row + c] = (inp[row + c] - m) * s * weight[c] + bias[c];
    mean[i] = m;
    rstd[i] = s;
  }
  return { out, mean, rstd };
}

/** LayerNorm gradients, as in llm.c: dnorm = dout·weight, then the two row means that the normalisation couples. */
export function layerNormBackward(
  dout: Float64Array,
  inp: Float64Array,
  weight: Float64Array,
  mean: Float64Array,
  rstd: Float64Array,
  N: number,
  C: number,
): { dinp: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const dinp = new Float64Array(N * C);
  const dweight = new Float64Array(C);
  const dbias = new Float64Array(C);
  for (let i = 0; i < N; i++) {
    const row = i * C;
    let dnormMean = 0;
    let dnormNormMean = 0;
    for (let c = 0; c < C; c++) {
      const norm = (inp[row + c] - mean[i]) * rstd[i];
      const dnorm = weight[c] * dout[row + c];
      dnormMean += dnorm;
      dnormNormMean += dnorm * norm;
    }
    dnormMean /= C;
    dnormNormMean /= C;
    for (let c = 0; c < C; c++) {
      const norm = (inp[row + c] - mean[i]) * rstd[i];
      const dnorm = weight[c] * dout[row + c];
      dbias[c] += dout[row + c];
      dweight[c] += norm * dout[row + c];
      dinp[row + c] = (dnorm - dnormMean - norm * dnormNormMean) * rstd[i];
    }
  }
  return { dinp, dweight, dbias };
}

const GELU_SCALE = Math.sqrt(2 / Math.PI);

/** GPT-2's tanh approximation ("gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function gelu(x: Float64Array): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    out[i] = 0.5 * xi * (1 + Math.tanh(GELU_SCALE * (xi + 0.044715 * xi * xi * xi)));
  }
  return out;
}

/** dinp = dout·gelu'(x), differentiating the tanh approximation exactly. */
export function geluBackward(x: Float64Array, dout: Float64Array): Float64Array {
  const dinp = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    const tanhOut = Math.tanh(GELU_SCALE * (xi + 0.044715 * xi * xi * xi));
    const sech2 = 1 - tanhOut * tanhOut;
    const localGrad = 0.5 * (1 + tanhOut) + 0.5 * xi * sech2 * GELU_SCALE * (1 + 3 * 0.044715 * xi * xi);
    dinp[i] = localGrad * dout[i];
  }
  return dinp;
}

/** Gemma 2's attention: scores scaled by `scale` (default 1/√hs), then soft-capped to ±softcap before the softmax. */
export interface AttentionOptions {
  scale?: number;
  softcap?: number;
}

/** x → cap·tanh(x/cap) elementwise (Gemma 2's logits), and the backward d·(1 − tanh²(x/cap)) from the raw x. */
export function softcap(x: Float64Array, cap: number): Float64Array {
  return x.map((v) => cap * Math.tanh(v / cap));
}

export function softcapBackward(dout: Float64Array, x: Float64Array, cap: number): Float64Array {
  return dout.map((d, i) => d * (1 - Math.tanh(x[i] / cap) ** 2));
}

/** Row width of a fused qkv tensor: q (NH heads) | k (KVH heads) | v (KVH heads). */
const qkvWidth = (s: AttentionShape) => (s.NH + 2 * s.KVH) * s.hs;

/**
 * Causal self-attention with grouped key/value heads over a fused qkv[B,T,(NH+2·KVH)·hs] (q | k | v per token,
 * head h in columns h·hs … of its part). att[B,NH,T,T] holds the softmax probabilities (zero above the diagonal),
 * out[B,T,NH·hs] the heads side by side, stats[B,NH,T,2] each row's max of the (capped) scores and 1/Σexp(score −
 * max) (what the GPU's flash-style kernels keep instead of att). GPT-2 is NH = KVH, hs = C/NH.
 */
export function groupedAttentionForward(qkv: Float64Array, s: AttentionShape, options: AttentionOptions = {}): { out: Float64Array; att: Float64Array; stats: Float64Array } {
  const { B, T, NH, KVH, hs } = s;
  const W = qkvWidth(s);
  const group = NH / KVH;
  const scale = options.scale ?? 1 / Math.sqrt(hs);
  const cap = (x: number) => (options.softcap ? options.softcap * Math.tanh(x / options.softcap) : x);
  const out = new Float64Array(B * T * NH * hs);
  const att = new Float64Array(B * NH * T * T);
  const stats = new Float64Array(2 * B * NH * T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const kvh = Math.floor(h / group);
        const q = (b * T + t) * W + h * hs;
        const attRow = ((b * NH + h) * T + t) * T;
        // scores against keys 0..t, then a numerically stable softmax
        let max = -Infinity;
        for (let t2 = 0; t2 <= t; t2++) {
          const k = (b * T + t2) * W + (NH + kvh) * hs;
          let dot = 0;
          for (let i = 0; i < hs; i++) dot += qkv[q + i] * qkv[k + i];
          att[attRow + t2] = cap(dot * scale);
          max = Math.max(max, att[attRow + t2]);
        }
        let sumExp = 0;
        for (let t2 = 0; t2 <= t; t2++) {
          att[attRow + t2] = Math.exp(att[attRow + t2] - max);
          sumExp += att[attRow + t2];
        }
        for (let t2 = 0; t2 <= t; t2++) att[attRow + t2] /= sumExp;
        stats.set([max, 1 / sumExp], 2 * ((b * NH + h) * T + t));
        // weighted sum of the values
        const o = (b * T + t) * NH * hs + h * hs;
        for (let t2 = 0; t2 <= t; t2++) {
          const v = (b * T + t2) * W + (NH + KVH + kvh) * hs;
          for (let i = 0; i < hs; i++) out[o + i] += att[attRow + t2] * qkv[v + i];
        }
      }
    }
  }
  return { out, att, stats };
}

/**
 * Single-query attention against a key/value cache (kvcache.wgsl's attend): token n's query heads (q[N, NH·hs])
 * attend to keys 0 … positions[n] of cache row rows[n] (kCache, vCache [rows, maxLength, KVH·hs]), kv head
 * h / (NH/KVH), softmax of cap(scale·q·k). out[N, NH·hs].
 */
export function cachedAttention(
  q: Float64Array, kCache: Float64Array, vCache: Float64Array, rows: ArrayLike<number>, positions: ArrayLike<number>,
  s: { NH: number; KVH: number; hs: number; maxLength: number }, options: AttentionOptions = {},
): Float64Array {
  const { NH, KVH, hs, maxLength } = s;
  const N = positions.length;
  const group = NH / KVH;
  const scale = options.scale ?? 1 / Math.sqrt(hs);
  const cap = (x: number) => (options.softcap ? options.softcap * Math.tanh(x / options.softcap) : x);
  const out = new Float64Array(N * NH * hs);
  for (let n = 0; n < N; n++) {
    for (let h = 0; h < NH; h++) {
      const kvh = Math.floor(h / group);
      const at = (j: number) => ((rows[n] * maxLength + j) * KVH + kvh) * hs;
      const scores = Array.from({ length: positions[n] + 1 }, (_, j) => {
        let dot = 0;
        for (let i = 0; i < hs; i++) dot += q[(n * NH + h) * hs + i] * kCache[at(j) + i];
        return cap(dot * scale);
      });
      const max = Math.max(...scores);
      const e = scores.map((x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let j = 0; j < e.length; j++) {
        for (let i = 0; i < hs; i++) out[(n * NH + h) * hs + i] += (e[j] / sum) * vCache[at(j) + i];
      }
    }
  }
  return out;
}

/** dqkv (fused layout) from dout[B,T,NH·hs], through the value sum, the softmax and the scaled q·k scores. */
export function groupedAttentionBackward(dout: Float64Array, qkv: Float64Array, att: Float64Array, s: AttentionShape, options: AttentionOptions = {}): Float64Array {
  const { B, T, NH, KVH, hs } = s;
  const W = qkvWidth(s);
  const group = NH / KVH;
  const scale = options.scale ?? 1 / Math.sqrt(hs);
  const dqkv = new Float64Array(B * T * W);
  const datt = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < NH; h++) {
        const kvh = Math.floor(h / group);
        const q = (b * T + t) * W + h * hs;
        const o = (b * T + t) * NH * hs + h * hs;
        const attRow = ((b * NH + h) * T + t) * T;
        // through out = Σ att·v
        for (let t2 = 0; t2 <= t; t2++) {
          const v = (b * T + t2) * W + (NH + KVH + kvh) * hs;
          let dot = 0;
          for (let i = 0; i < hs; i++) {
            dot += qkv[v + i] * dout[o + i];
            dqkv[v + i] += att[attRow + t2] * dout[o + i];
          }
          datt[t2] = dot;
        }
        // through the softmax: dscore = att·(datt − Σ att·datt)
        let weighted = 0;
        for (let t2 = 0; t2 <= t; t2++) weighted += att[attRow + t2] * datt[t2];
        // through score = cap(scale·q·k), cap' = 1 − tanh² (recomputed: the probabilities do not keep it)
        for (let t2 = 0; t2 <= t; t2++) {
          const k = (b * T + t2) * W + (NH + kvh) * hs;
          let capGrad = 1;
          if (options.softcap) {
            let dot = 0;
            for (let i = 0; i < hs; i++) dot += qkv[q + i] * qkv[k + i];
            capGrad = 1 - Math.tanh((dot * scale) / options.softcap) ** 2;
          }
          const dscore = att[attRow + t2] * (datt[t2] - weighted) * scale * capGrad;
          for (let i = 0; i < hs; i++) {
            dqkv[q + i] += dscore * qkv[k + i];
            dqkv[k + i] += dscore * qkv[q + i];
          }
        }
      }
    }
  }
  return dqkv;
}

/** GPT-2's multi-head attention over qkv[B,T,3C]: groupedAttentionForward with NH = KVH, hs = C/NH. */
export function attentionForward(qkv: Float64Array, B: number, T: number, C: number, NH: number): { out: Float64Array; att: Float64Array } {
  return groupedAttentionForward(qkv, { B, T, NH, KVH: NH, hs: C / NH });
}

/** dqkv[B,T,3C] for attentionForward. */
export function attentionBackward(dout: Float64Array, qkv: Float64Array, att: Float64Array, B: number, T: number, C: number, NH: number): Float64Array {
  return groupedAttentionBackward(dout, qkv, att, { B, T, NH, KVH: NH, hs: C / NH });
}

/** RMSNorm per row of inp[N,C]: out = x·rstd·(w + gainOffset), rstd = 1/√(mean x² + eps); rstd saved. */
export function rmsNormForward(inp: Float64Array, weight: Float64Array, N: number, C: number, eps: number, gainOffset: number): { out: Float64Array; rstd: Float64Array } {
  const out = new Float64Array(N * C);
  const rstd = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    let squares = 0;
    for (let c = 0; c < C; c++) squares += inp[i * C + c] ** 2;
    const s = 1 / Math.sqrt(squares / C + eps);
    for (let c = 0; c < C; c++) out[i * C + c] = inp[i * C + c] * s * (weight[c] + gainOffset);
    rstd[i] = s;
  }
  return { out, rstd };
}

/** RMSNorm gradients: with n = x·rstd, g = (w + gainOffset)·dout: dinp = rstd·(g − n·mean(g·n)), dweight = Σ n·dout. */
export function rmsNormBackward(dout: Float64Array, inp: Float64Array, weight: Float64Array, rstd: Float64Array, N: number, C: number, gainOffset: number): { dinp: Float64Array; dweight: Float64Array } {
  const dinp = new Float64Array(N * C);
  const dweight = new Float64Array(C);
  for (let i = 0; i < N; i++) {
    let dot = 0;
    for (let c = 0; c < C; c++) dot += (weight[c] + gainOffset) * dout[i * C + c] * inp[i * C + c] * rstd[i];
    dot /= C;
    for (let c = 0; c < C; c++) {
      const n = inp[i * C + c] * rstd[i];
      dinp[i * C + c] = ((weight[c] + gainOffset) * dout[i * C + c] - n * dot) * rstd[i];
      dweight[c] += n * dout[i * C + c];
    }
  }
  return { dinp, dweight };
}

/**
 * HF's rotate-half rotary embedding on the first R dims of each head of x[tokens, H·hd] (token n at position n % T),
 * θ_j = inverse frequencies (R/2 of them); sign −1 applies the transposed rotation (the backward pass). With
 * `positions`, token n is at positions[n] (incremental decoding).
 */
export function rotary(x: Float64Array, tokens: number, T: number, H: number, hd: number, R: number, invFreq: Float64Array, sign = 1, positions?: ArrayLike<number>): Float64Array {
  const out = Float64Array.from(x);
  const half = R / 2;
  for (let n = 0; n < tokens; n++) {
    const t = positions ? positions[n] : n % T;
    for (let h = 0; h < H; h++) {
      const base = (n * H + h) * hd;
      for (let j = 0; j < half; j++) {
        const c = Math.cos(t * invFreq[j]);
        const s = sign * Math.sin(t * invFreq[j]);
        const a = x[base + j];
        const b = x[base + j + half];
        out[base + j] = a * c - b * s;
        out[base + j + half] = b * c + a * s;
      }
    }
  }
  return out;
}

const silu = (x: number) => x / (1 + Math.exp(-x));
const siluGrad = (x: number) => {
  const s = 1 / (1 + Math.exp(-x));
  return s * (1 + x * (1 - s));
};
const geluScalar = (x: number) => 0.5 * x * (1 + Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x)));
const geluGrad = (x: number) => {
  const t = Math.tanh(GELU_SCALE * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_SCALE * (1 + 3 * 0.044715 * x * x);
};

/** Gated MLP activation over inp[N,2I] = gate|up: out[N,I] = act(gate)·up, act silu (swiglu) or tanh-GELU (geglu). */
export function gatedForward(inp: Float64Array, N: number, I: number, kind: "swiglu" | "geglu"): Float64Array {
  const act = kind === "swiglu" ? silu : geluScalar;
  const out = new Float64Array(N * I);
  for (let n = 0; n < N; n++) for (let i = 0; i < I; i++) out[n * I + i] = act(inp[n * 2 * I + i]) * inp[n * 2 * I + I + i];
  return out;
}

/** dinp[N,2I] of gatedForward. */
export function gatedBackward(dout: Float64Array, inp: Float64Array, N: number, I: number, kind: "swiglu" | "geglu"): Float64Array {
  const act = kind === "swiglu" ? silu : geluScalar;
  const grad = kind === "swiglu" ? siluGrad : geluGrad;
  const dinp = new Float64Array(N * 2 * I);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < I; i++) {
      const g = inp[n * 2 * I + i];
      const u = inp[n * 2 * I + I + i];
      dinp[n * 2 * I + i] = dout[n * I + i] * u * grad(g);
      dinp[n * 2 * I + I + i] = dout[n * I + i] * act(g);
    }
  }
  return dinp;
}

/** out[B,T,C] = scale·wte[tokens[b,t]] + wpe[t] (no position term when wpe is null: rotary families). */
export function embeddingForward(
  tokens: Uint32Array,
  wte: Float64Array,
  wpe: Float64Array | null,
  B: number,
  T: number,
  C: number,
  scale = 1,
): Float64Array {
  const out = new Float64Array(B * T * C);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = (b * T + t) * C;
      const tokenRow = tokens[b * T + t] * C;
      for (let c = 0; c < C; c++) out[row + c] = scale * wte[tokenRow + c] + (wpe ? wpe[t * C + c] : 0);
    }
  }
  return out;
}

/** dwte[V,C] sums scale·dout over every position of each token; dwpe[maxT,C] sums over the batch at each position. */
export function embeddingBackward(
  dout: Float64Array,
  tokens: Uint32Array,
  B: number,
  T: number,
  C: number,
  V: number,
  maxT: number,
  scale = 1,
): { dwte: Float64Array; dwpe: Float64Array } {
  const dwte = new Float64Array(V * C);
  const dwpe = new Float64Array(maxT * C);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = (b * T + t) * C;
      const tokenRow = tokens[b * T + t] * C;
      for (let c = 0; c < C; c++) {
        dwte[tokenRow + c] += scale * dout[row + c];
        dwpe[t * C + c] += dout[row + c];
      }
    }
  }
  return { dwte, dwpe };
}
