// Token + position embeddings: out[b,t,:] = scale·wte[tokens[b,t],:] + wpe[t,:], the position term only for
// learned positions (hasPositions = 1; rotary families add none) and scale ≠ 1 only for Gemma (√hidden).
//
// The backward pass must add each position's gradient into the row of its token, and a token can repeat within a
// batch; instead of float atomics the CPU groups positions by token id (src/gpu/kernels/embedding.ts), so that
// `tokenGradients` runs one workgroup per distinct token and sums its positions in ascending order. The position
// gradient is a plain sum over the batch.
//
// 1-D grids are folded into x/y (index = x + y·65535·WG, or workgroup = x + y·65535); see residual.wgsl.

override WG: u32 = 256u;

struct Params {
  B: u32,
  T: u32,
  C: u32,
  uniqueTokens: u32, // backward: number of distinct token ids in the batch
  scale: f32,
  hasPositions: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- forward: one thread per output element ----

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read> wte: array<f32>;
@group(0) @binding(4) var<storage, read> wpe: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.B * p.T * p.C) { return; }
  let position = i / p.C; // b·T + t
  let c = i % p.C;
  let t = position % p.T;
  var value = wte[tokens[position] * p.C + c] * p.scale;
  if (p.hasPositions == 1u) { value += wpe[t * p.C + c]; }
  out[i] = value;
}

// ---- backward, wte: one workgroup per distinct token ----
// bucketTokens[u] is the u-th distinct token id; its positions (b·T + t, ascending) are
// bucketPositions[bucketOffsets[u] .. bucketOffsets[u + 1]].

@group(0) @binding(1) var<storage, read_write> dwte: array<f32>;
@group(0) @binding(2) var<storage, read> tokenDout: array<f32>;
@group(0) @binding(3) var<storage, read> bucketTokens: array<u32>;
@group(0) @binding(4) var<storage, read> bucketOffsets: array<u32>;
@group(0) @binding(5) var<storage, read> bucketPositions: array<u32>;

@compute @workgroup_size(WG)
fn tokenGradients(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let u = wg.x + wg.y * 65535u;
  if (u >= p.uniqueTokens) { return; }
  let row = bucketTokens[u] * p.C;
  let first = bucketOffsets[u];
  let last = bucketOffsets[u + 1u];
  for (var c = lid; c < p.C; c += WG) {
    var sum = 0.0;
    for (var k = first; k < last; k++) { sum += tokenDout[bucketPositions[k] * p.C + c]; }
    dwte[row + c] += sum * p.scale;
  }
}

// ---- backward, wpe: dwpe[t,c] += Σ_b dout[b,t,c], one thread per (t, c) ----

@group(0) @binding(1) var<storage, read_write> dwpe: array<f32>;
@group(0) @binding(2) var<storage, read> positionDout: array<f32>;

@compute @workgroup_size(WG)
fn positionGradients(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG; // t·C + c
  if (i >= p.T * p.C) { return; }
  var sum = 0.0;
  for (var b = 0u; b < p.B; b++) { sum += positionDout[b * p.T * p.C + i]; }
  dwpe[i] += sum;
}
