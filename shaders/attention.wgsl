// Causal multi-head self-attention with grouped key/value heads (GQA; MQA when there is one, MHA when there are
// NH): query head h attends with key/value head h / group, group = NH / (number of kv heads). att[B,NH,T,T] holds
// the softmax probabilities (zero above the diagonal), out[B,T,NH·hs] the heads concatenated again.
//
// The kernels work on "head views": for a tensor [B,T,stride] and a column offset, head (b,h) is the T×hs matrix
// at columns offset + h·hs, so q, k and v are read straight out of a fused qkv projection (GPT-2's c_attn, or
// q_proj|k_proj|v_proj) or out of separate buffers. The same three products serve forward and backward without
// any permute:
//   scores                 P[i,j]  = scale · Σ_d L[i,d]·R[j,d]    for j ≤ i   (Q·Kᵀ; and dout·Vᵀ)
//   weightedSum            O[i,d]  = scale · Σ_{j≤i} P[i,j]·R[j,d]           (att·V; and dscores·K → dq)
//   transposedWeightedSum  O[j,d]  = scale · Σ_{i≥j} P[i,j]·R[i,d]           (attᵀ·dout → dv; dscoresᵀ·Q → dk)
// In scores and weightedSum R is a key/value head (h / group); transposedWeightedSum writes a key/value head and
// sums the products of the group's query heads into it, in a fixed order.
// Each is a tiled product. A 16×16 workgroup computes a BM × BN block of outputs, each thread TM × TN of them
// (rows ty + 16·r, columns tx + 16·c), stepping through the summed dimension BK at a time with both operand blocks
// staged in workgroup memory: a global value is read once per block, and each thread does TM·TN multiply-adds per
// pair of workgroup-memory reads. Blocks wholly above the diagonal are skipped. The row softmax and its backward run
// one workgroup per row with tree reductions. Every sum has a fixed order, so results are deterministic.

const THREADS: u32 = 16u;          // workgroup is THREADS × THREADS
const TM: u32 = 4u;                // output rows per thread
const BM: u32 = THREADS * TM;      // output rows per workgroup
const BK: u32 = 16u;               // step along the summed dimension
const MAX_TN: u32 = 4u;
override TN: u32 = 4u;             // output columns per thread (1, 2 or 4): the weighted sums match it to hs
override WG: u32 = 32u;            // softmax workgroup size, a power of two

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
  group: u32,     // query heads per key/value head
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> lhs: array<f32>;
@group(0) @binding(3) var<storage, read> rhs: array<f32>;

// Operand blocks. The scores kernel keeps both as [row][k], the weighted sums as [k][row or column]. One padding
// column where threads walk down a column (reading blockR, writing blockP), so they hit different memory banks.
var<workgroup> blockL: array<array<f32, BK + 1u>, BM>;
var<workgroup> blockR: array<array<f32, BK + 1u>, BM>;
var<workgroup> blockP: array<array<f32, BM + 1u>, BK>;
var<workgroup> blockV: array<array<f32, THREADS * MAX_TN>, BK>;

// Element (row, d) of head h of batch row b in a [B,T,stride] tensor whose head columns start at offset.
fn headIndex(stride: u32, offset: u32, b: u32, h: u32, row: u32, d: u32) -> u32 {
  return (b * p.T + row) * stride + offset + h * p.hs + d;
}

fn probIndex(bh: u32, i: u32, j: u32) -> u32 {
  return (bh * p.T + i) * p.T + j;
}

// Operand loads with zero outside the matrix (blocks overhang T and hs) and, for probabilities, above the diagonal.
fn lhsHead(b: u32, h: u32, row: u32, d: u32) -> f32 {
  if (row < p.T && d < p.hs) { return lhs[headIndex(p.lhsStride, p.lhsOffset, b, h, row, d)]; }
  return 0.0;
}

fn rhsHead(b: u32, h: u32, row: u32, d: u32) -> f32 {
  if (row < p.T && d < p.hs) { return rhs[headIndex(p.rhsStride, p.rhsOffset, b, h, row, d)]; }
  return 0.0;
}

fn lhsProb(bh: u32, i: u32, j: u32) -> f32 {
  if (i < p.T && j <= i) { return lhs[probIndex(bh, i, j)]; }
  return 0.0;
}

fn storeHead(b: u32, h: u32, row: u32, d: u32, value: f32) {
  if (row < p.T && d < p.hs) { out[headIndex(p.outStride, p.outOffset, b, h, row, d)] = value * p.scale; }
}

// grid (⌈T/BM⌉, ⌈T/BM⌉, B·NH): workgroup (x, y) computes P[y·BM …, x·BM …]. Always TN = TM (square blocks).
@compute @workgroup_size(THREADS, THREADS)
fn scores(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) flat: u32) {
  let bh = wg.z;
  let b = bh / p.NH;
  let h = bh % p.NH;
  let i0 = wg.y * BM;
  let j0 = wg.x * BM;
  if (j0 >= i0 + BM) { return; } // wholly above the diagonal; the softmax writes those zeros
  var acc: array<array<f32, MAX_TN>, TM>;
  for (var d0 = 0u; d0 < p.hs; d0 += BK) {
    for (var e = flat; e < BM * BK; e += THREADS * THREADS) {
      let row = e / BK;
      let k = e % BK;
      blockL[row][k] = lhsHead(b, h, i0 + row, d0 + k);
      blockR[row][k] = rhsHead(b, h / p.group, j0 + row, d0 + k);
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var a: array<f32, TM>;
      var b: array<f32, MAX_TN>;
      for (var r = 0u; r < TM; r++) { a[r] = blockL[lid.y + THREADS * r][k]; }
      for (var c = 0u; c < TM; c++) { b[c] = blockR[lid.x + THREADS * c][k]; }
      for (var r = 0u; r < TM; r++) {
        for (var c = 0u; c < TM; c++) { acc[r][c] += a[r] * b[c]; }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < TM; r++) {
    for (var c = 0u; c < TM; c++) {
      let i = i0 + lid.y + THREADS * r;
      let j = j0 + lid.x + THREADS * c;
      if (i < p.T && j <= i) { out[probIndex(bh, i, j)] = acc[r][c] * p.scale; }
    }
  }
}

// Adds one BK step of blockP·blockV into acc: rows ty + 16·r from blockP[k][row], columns tx + 16·c of blockV.
fn accumulateWeighted(acc: ptr<function, array<array<f32, MAX_TN>, TM>>, lid: vec3<u32>) {
  for (var k = 0u; k < BK; k++) {
    var a: array<f32, TM>;
    var b: array<f32, MAX_TN>;
    for (var r = 0u; r < TM; r++) { a[r] = blockP[k][lid.y + THREADS * r]; }
    for (var c = 0u; c < TN; c++) { b[c] = blockV[k][lid.x + THREADS * c]; }
    for (var r = 0u; r < TM; r++) {
      for (var c = 0u; c < TN; c++) { (*acc)[r][c] += a[r] * b[c]; }
    }
  }
}

// Stages rows k0 … k0+BK−1, columns d0 … d0 + 16·TN − 1 of rhs head h into blockV.
fn stageValues(b: u32, h: u32, k0: u32, d0: u32, flat: u32) {
  let width = THREADS * TN;
  for (var e = flat; e < BK * width; e += THREADS * THREADS) {
    blockV[e / width][e % width] = rhsHead(b, h, k0 + e / width, d0 + e % width);
  }
}

fn storeBlock(acc: ptr<function, array<array<f32, MAX_TN>, TM>>, b: u32, h: u32, row0: u32, d0: u32, lid: vec3<u32>) {
  for (var r = 0u; r < TM; r++) {
    for (var c = 0u; c < TN; c++) { storeHead(b, h, row0 + lid.y + THREADS * r, d0 + lid.x + THREADS * c, (*acc)[r][c]); }
  }
}

// grid (⌈hs/(16·TN)⌉, ⌈T/BM⌉, B·NH): workgroup (x, y) computes O[y·BM …, x·16·TN …].
@compute @workgroup_size(THREADS, THREADS)
fn weightedSum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(local_invocation_index) flat: u32) {
  let bh = wg.z;
  let b = bh / p.NH;
  let h = bh % p.NH;
  let i0 = wg.y * BM;
  let d0 = wg.x * THREADS * TN;
  var acc: array<array<f32, MAX_TN>, TM>;
  let end = min(i0 + BM, p.T); // causal: these rows only see j < i0 + BM
  for (var j0 = 0u; j0 < end; j0 += BK) {
    for (var e = flat; e < BK * BM; e += THREADS * THREADS) {
      let row = e / BK; // read along j: contiguous in memory
      let k = e % BK;
      blockP[k][row] = lhsProb(bh, i0 + row, j0 + k);
    }
    stageValues(b, h / p.group, j0, d0, flat);
    workgroupBarrier();
    accumulateWeighted(&acc, lid);
    workgroupBarrier();
  }
  storeBlock(&acc, b, h, i0, d0, lid);
}

// grid (⌈hs/(16·TN)⌉, ⌈T/BM⌉, B·NH/group): workgroup (x, y) computes O[y·BM …, x·16·TN …] of key/value head g
// from the columns of P of query heads g·group … g·group + group − 1.
@compute @workgroup_size(THREADS, THREADS)
fn transposedWeightedSum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                         @builtin(local_invocation_index) flat: u32) {
  let kvHeads = p.NH / p.group;
  let b = wg.z / kvHeads;
  let g = wg.z % kvHeads;
  let j0 = wg.y * BM;
  let d0 = wg.x * THREADS * TN;
  var acc: array<array<f32, MAX_TN>, TM>;
  for (var m = 0u; m < p.group; m++) {
    let h = g * p.group + m;
    let bh = b * p.NH + h;
    for (var i0 = j0; i0 < p.T; i0 += BK) { // causal: rows above j0 are zero in these columns
      for (var e = flat; e < BK * BM; e += THREADS * THREADS) {
        let k = e / BM; // read along j: contiguous in memory
        let col = e % BM;
        blockP[k][col] = lhsProb(bh, i0 + k, j0 + col);
      }
      stageValues(b, h, i0, d0, flat);
      workgroupBarrier();
      accumulateWeighted(&acc, lid);
      workgroupBarrier();
    }
  }
  storeBlock(&acc, b, g, j0, d0, lid);
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
