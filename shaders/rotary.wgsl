// Rotary position embedding in Hugging Face's rotate-half convention (LlamaRotaryEmbedding, apply_rotary_pos_emb),
// on the first R = rotaryDim dimensions of each head (Phi's partial rotary; R = head_dim elsewhere):
//   for j < R/2, with c = cos(t·θ_j), s = sin(t·θ_j):
//     out[j]       = x[j]·c − x[j + R/2]·s
//     out[j + R/2] = x[j + R/2]·c + x[j]·s
//   and out[d] = x[d] for R ≤ d < head_dim.
// The backward pass applies the transposed rotation (the inverse: t·θ → −t·θ).
//
// Heads are read and written through token views (see rmsnorm.wgsl): head h of token n starts at
// n·stride + offset + h·headDim, so q and k can be rotated straight out of the fused qkv activations. The cos/sin
// table is computed on the CPU in float64 (θ_j with any rope scaling): table[t·R + j] = cos, table[t·R + R/2 + j]
// = sin. One thread per element, 1-D grid folded into x/y (see residual.wgsl).

override WG: u32 = 256u;

struct Params {
  n: u32,          // tokens · H · headDim elements
  T: u32,          // sequence length: token n is at position n % T
  H: u32,          // heads per token
  headDim: u32,
  R: u32,          // rotary dimensions, even
  inStride: u32,
  inOffset: u32,
  outStride: u32,
  outOffset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read> table: array<f32>;

// Incremental decoding (forwardAt): token n is at positions[n] instead of n % T. Only that entry point reads it.
@group(0) @binding(4) var<storage, read> positions: array<u32>;

// Element i (token · H · headDim + head · headDim + d) at position t. sign = 1: forward rotation; −1: its transpose.
fn rotate(i: u32, t: u32, sign: f32) {
  let d = i % p.headDim;
  let row = i / p.headDim; // token · H + head
  let token = row / p.H;
  let head = row % p.H;
  let src = token * p.inStride + p.inOffset + head * p.headDim;
  let dst = token * p.outStride + p.outOffset + head * p.headDim;
  let half = p.R / 2u;
  if (d >= p.R) {
    out[dst + d] = inp[src + d];
    return;
  }
  let j = d % half;
  let c = table[t * p.R + j];
  let s = sign * table[t * p.R + half + j];
  if (d < half) {
    out[dst + d] = inp[src + d] * c - inp[src + d + half] * s;
  } else {
    out[dst + d] = inp[src + d] * c + inp[src + d - half] * s;
  }
}

fn elementIndex(gid: vec3<u32>) -> u32 { return gid.x + gid.y * 65535u * WG; }
fn tokenOf(i: u32) -> u32 { return i / p.headDim / p.H; }

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = elementIndex(gid);
  if (i < p.n) { rotate(i, tokenOf(i) % p.T, 1.0); }
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = elementIndex(gid);
  if (i < p.n) { rotate(i, tokenOf(i) % p.T, -1.0); }
}

@compute @workgroup_size(WG)
fn forwardAt(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = elementIndex(gid);
  if (i < p.n) { rotate(i, positions[tokenOf(i)], 1.0); }
}
