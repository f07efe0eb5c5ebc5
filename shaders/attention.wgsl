// Causal multi-head self-attention on qkv[B,T,3C] laid out as HF GPT-2's c_attn output: q | k | v along the last
// dimension, head h in columns h·hs … h·hs + hs − 1 of each. att[B,NH,T,T] holds the softmax probabilities (zero
// above the diagonal), out[B,T,C] the heads concatenated again.
//
// The kernels work on "head views": for a tensor [B,T,stride] and a column offset, head (b,h) is the T×hs matrix
// at columns offset + h·hs. That lets the same three products serve forward and backward without any permute:
//   scores                 P[i,j]  = scale · Σ_d L[i,d]·R[j,d]    for j ≤ i   (Q·Kᵀ; and dout·Vᵀ)
//   weightedSum            O[i,d]  = scale · Σ_{j≤i} P[i,j]·R[j,d]           (att·V; and dpreatt·K → dq)
//   transposedWeightedSum  O[j,d]  = scale · Σ_{i≥j} P[i,j]·R[i,d]           (attᵀ·dout → dv; dpreattᵀ·Q → dk)
// Each is a tiled product: a TILE×TILE workgroup stages TILE×TILE blocks of both operands in workgroup memory, so
// every global value is read once per tile instead of once per output; tiles wholly above the diagonal are skipped.
// The row softmax and its backward run one workgroup per row with tree reductions. Every sum has a fixed order.

const TILE: u32 = 16u;
override WG: u32 = 256u; // softmax workgroup size, a power of two

struct Params {
  T: u32,
  NH: u32,
  hs: u32,
  rows: u32,      // B·NH·T rows of the probability matrices (softmax kernels)
  lhsStride: u32, // head views: row stride and first column, in floats
  lhsOffset: u32,
  rhsStride: u32,
  rhsOffset: u32,
  outStride: u32,
  outOffset: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> lhs: array<f32>;
@group(0) @binding(3) var<storage, read> rhs: array<f32>;

// One padding column so threads reading a tile column hit different memory banks.
var<workgroup> tileL: array<array<f32, TILE + 1u>, TILE>;
var<workgroup> tileR: array<array<f32, TILE + 1u>, TILE>;

// Element (row, d) of head bh = b·NH + h in a [B,T,stride] tensor whose head columns start at offset.
fn headIndex(stride: u32, offset: u32, bh: u32, row: u32, d: u32) -> u32 {
  let b = bh / p.NH;
  let h = bh % p.NH;
  return (b * p.T + row) * stride + offset + h * p.hs + d;
}

fn probIndex(bh: u32, i: u32, j: u32) -> u32 {
  return (bh * p.T + i) * p.T + j;
}

// Operand loads with zero outside the matrix (tiles overhang T and hs) and, for probabilities, above the diagonal.
fn lhsHead(bh: u32, row: u32, d: u32) -> f32 {
  if (row < p.T && d < p.hs) { return lhs[headIndex(p.lhsStride, p.lhsOffset, bh, row, d)]; }
  return 0.0;
}

fn rhsHead(bh: u32, row: u32, d: u32) -> f32 {
  if (row < p.T && d < p.hs) { return rhs[headIndex(p.rhsStride, p.rhsOffset, bh, row, d)]; }
  return 0.0;
}

fn lhsProb(bh: u32, i: u32, j: u32) -> f32 {
  if (i < p.T && j <= i) { return lhs[probIndex(bh, i, j)]; }
  return 0.0;
}

fn storeHead(bh: u32, row: u32, d: u32, value: f32) {
  if (row < p.T && d < p.hs) { out[headIndex(p.outStride, p.outOffset, bh, row, d)] = value * p.scale; }
}

// grid (⌈T/TILE⌉, ⌈T/TILE⌉, B·NH): workgroup (x, y) computes P[y·TILE …, x·TILE …].
@compute @workgroup_size(TILE, TILE)
fn scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let bh = wg.z;
  let i0 = wg.y * TILE;
  let j0 = wg.x * TILE;
  if (j0 >= i0 + TILE) { return; } // wholly above the diagonal; the softmax writes those zeros
  var acc = 0.0;
  for (var d0 = 0u; d0 < p.hs; d0 += TILE) {
    tileL[lid.y][lid.x] = lhsHead(bh, i0 + lid.y, d0 + lid.x);
    tileR[lid.y][lid.x] = rhsHead(bh, j0 + lid.y, d0 + lid.x);
    workgroupBarrier();
    for (var k = 0u; k < TILE; k++) { acc += tileL[lid.y][k] * tileR[lid.x][k]; }
    workgroupBarrier();
  }
  let i = i0 + lid.y;
  let j = j0 + lid.x;
  if (i < p.T && j <= i) { out[probIndex(bh, i, j)] = acc * p.scale; }
}

// grid (⌈hs/TILE⌉, ⌈T/TILE⌉, B·NH): workgroup (x, y) computes O[y·TILE …, x·TILE …].
@compute @workgroup_size(TILE, TILE)
fn weightedSum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let bh = wg.z;
  let i0 = wg.y * TILE;
  let d0 = wg.x * TILE;
  let i = i0 + lid.y;
  var acc = 0.0;
  let end = min(i0 + TILE, p.T); // causal: these rows only see j < i0 + TILE
  for (var j0 = 0u; j0 < end; j0 += TILE) {
    tileL[lid.y][lid.x] = lhsProb(bh, i, j0 + lid.x);
    tileR[lid.y][lid.x] = rhsHead(bh, j0 + lid.y, d0 + lid.x);
    workgroupBarrier();
    for (var k = 0u; k < TILE; k++) { acc += tileL[lid.y][k] * tileR[k][lid.x]; }
    workgroupBarrier();
  }
  storeHead(bh, i, d0 + lid.x, acc);
}

// grid (⌈hs/TILE⌉, ⌈T/TILE⌉, B·NH): workgroup (x, y) computes O[y·TILE …, x·TILE …] from the columns of P.
@compute @workgroup_size(TILE, TILE)
fn transposedWeightedSum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let bh = wg.z;
  let j0 = wg.y * TILE;
  let d0 = wg.x * TILE;
  var acc = 0.0;
  for (var i0 = j0; i0 < p.T; i0 += TILE) { // causal: rows above j0 are zero in these columns
    tileL[lid.y][lid.x] = lhsProb(bh, i0 + lid.y, j0 + lid.x);
    tileR[lid.y][lid.x] = rhsHead(bh, i0 + lid.y, d0 + lid.x);
    workgroupBarrier();
    for (var k = 0u; k < TILE; k++) { acc += tileL[k][lid.y] * tileR[k][lid.x]; }
    workgroupBarrier();
  }
  storeHead(bh, j0 + lid.y, d0 + lid.x, acc);
}

// ---- row softmax over the causal prefix, one workgroup per row of B·NH·T (grid folded: row = x + y·65535) ----

var<workgroup> partial: array<f32, WG>;

// Max (or sum) of v over the workgroup, every thread gets it. Fixed tree order: deterministic.
fn workgroupReduce(lid: u32, v: f32, takeMax: bool) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) {
      let a = partial[lid];
      let b = partial[lid + stride];
      partial[lid] = select(a + b, max(a, b), takeMax);
    }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier();
  return total;
}

const LOWEST: f32 = -3.4028234e38;

// att[row, :] (scaled scores for j ≤ i on entry) = softmax over j ≤ i, zero beyond, in place.
@compute @workgroup_size(WG)
fn softmaxForward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let i = row % p.T;
  let base = row * p.T;
  var m = LOWEST;
  for (var j = lid; j <= i; j += WG) { m = max(m, out[base + j]); }
  m = workgroupReduce(lid, m, true);
  var sum = 0.0;
  for (var j = lid; j <= i; j += WG) {
    let e = exp(out[base + j] - m); // ≤ 1: large logits cannot overflow
    out[base + j] = e;
    sum += e;
  }
  let norm = 1.0 / workgroupReduce(lid, sum, false); // sum ≥ 1 (the max term is e⁰)
  for (var j = lid; j < p.T; j += WG) {
    if (j <= i) { out[base + j] *= norm; } else { out[base + j] = 0.0; }
  }
}

// datt[row, :] = att·(datt − Σ_j att·datt) for j ≤ i, zero beyond, in place: the gradient of the scaled scores.
@compute @workgroup_size(WG)
fn softmaxBackward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x + wg.y * 65535u;
  if (row >= p.rows) { return; }
  let i = row % p.T;
  let base = row * p.T;
  var dot = 0.0;
  for (var j = lid; j <= i; j += WG) { dot += lhs[base + j] * out[base + j]; }
  dot = workgroupReduce(lid, dot, false);
  for (var j = lid; j < p.T; j += WG) {
    if (j <= i) { out[base + j] = lhs[base + j] * (out[base + j] - dot); } else { out[base + j] = 0.0; }
  }
}
