// Token + position embeddings: out[b,t,:] = scale·wte[tokens[b,t],:] + wpe[t,:], the position term only for
// learned positions (hasPositions = 1; rotary families add none) and scale ≠ 1 only for Gemma (√hidden).
//
// The backward pass must add each position's gradient into the row of its token, and a token can repeat within a
// batch; instead of float atomics the CPU groups positions by token id (src/gpu/kernels/embedding.ts), so that
// `tokenGradients` runs one workgroup per distinct token and sums its positions in ascending order. The position
// gradient is a plain sum over the batch.
//
// 1-D grids are folded into x/y (index = x + y·65535·WG, or workgroup = x + y·65535); see residual.wgsl.
//
// A token embedding can be larger than one binding may be (GPT-2's is 147 MiB, llvmpipe binds at most 128 MiB), so
// both passes run once per vocabulary range [vocabFirst, vocabFirst + vocabCount), with wte / dwte bound to that
// range alone: the forward writes the positions whose token falls in the range (every position is written by
// exactly one range), the backward handles the distinct tokens of the range (a contiguous run of the ascending
// buckets, starting at groupFirst). Indices are taken relative to the range, so (token − vocabFirst)·C + c stays
// below the binding's size and fits a u32 (see src/gpu/chunks.ts).

override WG: u32 = 256u;

struct Params {
  B: u32,
  T: u32,
  C: u32,
  uniqueTokens: u32, // backward: number of distinct token ids in this vocabulary range
  scale: f32,
  hasPositions: u32,
  vocabFirst: u32,   // the range wte/dwte are bound to
  vocabCount: u32,
  groupFirst: u32,   // backward: index of the range's first distinct token in the buckets
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
  let token = tokens[position];
  if (token < p.vocabFirst || token - p.vocabFirst >= p.vocabCount) { return; } // another range writes it
  var value = wte[(token - p.vocabFirst) * p.C + c] * p.scale;
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
  let local = wg.x + wg.y * 65535u;
  if (local >= p.uniqueTokens) { return; }
  let u = p.groupFirst + local;
  let row = (bucketTokens[u] - p.vocabFirst) * p.C;
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
