// RMSNorm over rows of C values, as in HF's LlamaRMSNorm (and Gemma's, whose gain is 1 + w):
//   out = x · rstd · (w + gainOffset),  rstd = 1/√(mean(x²) + eps)
//
// Rows live in "row views" so the same kernels normalise the residual stream ([N, C], one row per token) and each
// head of q or k in place in the fused qkv activations (Qwen3's q_norm/k_norm: H rows of C = head_dim per token):
// row r = (token n, head h) with n = r / H, h = r % H starts at n·stride + offset + h·C. Input and output views
// are separate (different strides), rstd[rows] is saved for the backward pass.
//
// forward:  one workgroup per row, Σx² by a fixed tree reduction (deterministic).
// backward: with n = x·rstd and g = (w + gainOffset)·dout:  dinp (+)= rstd·(g − n·mean(g·n)), one workgroup per
//           row; dweight += Σ_rows n·dout by the two fixed-order column passes of layernorm.wgsl.
//
// Row grids are folded into x/y (row = x + y·65535); see residual.wgsl for the conventions.

override WG: u32 = 32u; // a power of two: the tree reduction halves it

struct Params {
  rows: u32,
  C: u32,
  H: u32,           // rows per token (heads), 1 for the residual stream
  inStride: u32,    // input (and dinp) view: floats per token, first column
  inOffset: u32,
  outStride: u32,   // output (and dout) view
  outOffset: u32,
  eps: f32,
  gainOffset: f32,  // 0: w; 1: Gemma's (1 + w)
  accumulate: u32,  // backward: 1 adds into dinp, 0 overwrites it
  rowsPerBlock: u32,
  blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> partial: array<vec2<f32>, WG>;

fn workgroupSum(lid: u32, v: vec2<f32>) -> vec2<f32> {
  partial[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

fn inBase(row: u32) -> u32 { return (row / p.H) * p.inStride + p.inOffset + (row % p.H) * p.C; }
fn outBase(row: u32) -> u32 { return (row / p.H) * p.outStride + p.outOffset + (row % p.H) * p.C; }

// ---- forward ----

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstdOut: array<f32>;
// read_write only so that residualForward, which writes its sum here first, shares normalizeRow; forward only reads it
@group(0) @binding(3) var<storage, read_write> inp: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;

fn normalizeRow(row: u32, lid: u32) {
  let src = inBase(row);
  let dst = outBase(row);
  var squares = 0.0;
  for (var c = lid; c < p.C; c += WG) {
    let x = inp[src + c];
    squares += x * x;
  }
  let rstd = 1.0 / sqrt(workgroupSum(lid, vec2(squares, 0.0)).x / f32(p.C) + p.eps);
  for (var c = lid; c < p.C; c += WG) {
    out[dst + c] = inp[src + c] * rstd * (weight[c] + p.gainOffset);
  }
  if (lid == 0u) { rstdOut[row] = rstd; }
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  normalizeRow(row, lid);
}

// ---- residual add fused with the forward: inp = a + b, then forward of it ----
// As layernorm.wgsl's residualForward: one dispatch for the decoder's residual add and the norm after it, each
// thread reading back only what it wrote, the row through forward's own code (bit-identical to add + forward).
// a and b use the input view's geometry. Bindings 1–4 as forward's (3 = the residual, written); 5 = a, 6 = b.

@group(0) @binding(5) var<storage, read> addA: array<f32>;
@group(0) @binding(6) var<storage, read> addB: array<f32>;

@compute @workgroup_size(WG)
fn residualForward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let src = inBase(row);
  for (var c = lid; c < p.C; c += WG) { inp[src + c] = addA[src + c] + addB[src + c]; }
  normalizeRow(row, lid);
}

// ---- backward, input ----

@group(0) @binding(1) var<storage, read_write> dinp: array<f32>;
@group(0) @binding(2) var<storage, read> bwdDout: array<f32>;
@group(0) @binding(3) var<storage, read> bwdInp: array<f32>;
@group(0) @binding(4) var<storage, read> bwdWeight: array<f32>;
@group(0) @binding(5) var<storage, read> bwdRstd: array<f32>;

@compute @workgroup_size(WG)
fn backwardInput(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let src = inBase(row);
  let grad = outBase(row);
  let rstd = bwdRstd[row];
  var dot = 0.0; // Σ g·n
  for (var c = lid; c < p.C; c += WG) {
    dot += (bwdWeight[c] + p.gainOffset) * bwdDout[grad + c] * bwdInp[src + c] * rstd;
  }
  let meanDot = workgroupSum(lid, vec2(dot, 0.0)).x / f32(p.C);
  for (var c = lid; c < p.C; c += WG) {
    let n = bwdInp[src + c] * rstd;
    let g = (bwdWeight[c] + p.gainOffset) * bwdDout[grad + c];
    let d = (g - n * meanDot) * rstd;
    if (p.accumulate == 1u) { dinp[src + c] += d; } else { dinp[src + c] = d; }
  }
}

// ---- backward, weight: scratch[block][c] = Σ n·dout over the block's rows, then the blocks in order ----

@group(0) @binding(1) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(2) var<storage, read> colDout: array<f32>;
@group(0) @binding(3) var<storage, read> colInp: array<f32>;
@group(0) @binding(4) var<storage, read> colRstd: array<f32>;

@compute @workgroup_size(WG)
fn columnPartials(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let block = gid.y;
  if (c >= p.C || block >= p.blocks) { return; }
  let first = block * p.rowsPerBlock;
  let last = min(first + p.rowsPerBlock, p.rows);
  var sum = 0.0;
  for (var row = first; row < last; row++) {
    sum += colInp[inBase(row) + c] * colRstd[row] * colDout[outBase(row) + c];
  }
  scratch[block * p.C + c] = sum;
}

@group(0) @binding(1) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(2) var<storage, read> blockSums: array<f32>;

@compute @workgroup_size(WG)
fn columnTotals(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var sum = 0.0;
  for (var block = 0u; block < p.blocks; block++) { sum += blockSums[block * p.C + c]; }
  dweight[c] += sum;
}
