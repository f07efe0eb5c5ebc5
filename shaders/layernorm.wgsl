// LayerNorm over the last dimension of inp[N,C], as in GPT-2 (eps 1e-5), after llm.c's layernorm_forward/backward.
//
// forward:  one workgroup per row. Two passes over the row: the mean first, then Σ(x − mean)², which keeps the
//           variance accurate when |mean| ≫ std (E[x²] − mean² would cancel). Row sums are tree reductions in
//           workgroup memory, so they are deterministic.
// backward: dinp needs two row sums, so it is again one workgroup per row. dweight and dbias are column sums over
//           all N rows; without float atomics they are done in two fixed-order steps: `columnPartials` sums blocks
//           of rows into scratch[2][blocks][C], then `columnTotals` adds the blocks in order into dweight/dbias.
//
// Rows are 1-D grids of workgroups folded into x/y (row = x + y·65535); see residual.wgsl for the conventions.

override WG: u32 = 32u; // a power of two: the tree reduction halves it

struct Params {
  N: u32,
  C: u32,
  eps: f32,
  rowsPerBlock: u32, // backward: rows summed by one columnPartials workgroup
  blocks: u32,       // backward: ceil(N / rowsPerBlock)
}

@group(0) @binding(0) var<uniform> p: Params;

var<workgroup> partial: array<vec2<f32>, WG>;

// Sums v over the workgroup (two sums at once); every thread gets the total. Fixed tree order: deterministic.
fn workgroupSum(lid: u32, v: vec2<f32>) -> vec2<f32> {
  partial[lid] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  let total = partial[0];
  workgroupBarrier(); // partial is reused by the next call
  return total;
}

fn rowIndex(wg: vec3<u32>) -> u32 {
  return wg.x + wg.y * 65535u;
}

// ---- forward: out = (x − mean)·rstd·weight + bias ----

@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> meanOut: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstdOut: array<f32>;
// read_write only so that residualForward, which writes its sum here first, shares normalizeRow; forward only reads it
@group(0) @binding(4) var<storage, read_write> inp: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;

fn normalizeRow(row: u32, lid: u32) {
  let base = row * p.C;
  let C = f32(p.C);

  var sum = 0.0;
  for (var c = lid; c < p.C; c += WG) { sum += inp[base + c]; }
  let mean = workgroupSum(lid, vec2(sum, 0.0)).x / C;

  var squares = 0.0;
  for (var c = lid; c < p.C; c += WG) {
    let d = inp[base + c] - mean;
    squares += d * d;
  }
  let variance = workgroupSum(lid, vec2(squares, 0.0)).x / C;
  let rstd = 1.0 / sqrt(variance + p.eps);

  for (var c = lid; c < p.C; c += WG) {
    out[base + c] = (inp[base + c] - mean) * rstd * weight[c] + bias[c];
  }
  if (lid == 0u) {
    meanOut[row] = mean;
    rstdOut[row] = rstd;
  }
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = rowIndex(wg);
  if (row >= p.N) { return; } // uniform: the whole workgroup leaves
  normalizeRow(row, lid);
}

// ---- residual add fused with the forward: inp = a + b (the residual stream), then forward of it ----
// The decoder's every residual add is followed by a norm (norm2 after attention, the next layer's norm1 or the final
// norm after the MLP); fusing them saves a dispatch and a pass over the sum. Each thread then reads back only the
// columns it wrote itself, and the row runs through forward's own code: bit-identical to add + forward.
// Bindings 1–6 as forward's (4 = the residual, written); 7 = a, 8 = b.

@group(0) @binding(7) var<storage, read> addA: array<f32>;
@group(0) @binding(8) var<storage, read> addB: array<f32>;

@compute @workgroup_size(WG)
fn residualForward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = rowIndex(wg);
  if (row >= p.N) { return; }
  let base = row * p.C;
  for (var c = lid; c < p.C; c += WG) { inp[base + c] = addA[base + c] + addB[base + c]; }
  normalizeRow(row, lid);
}

// ---- backward ----
// With n = (x − mean)·rstd and g = weight·dout:  dinp += (g − mean(g) − n·mean(g·n))·rstd,
// dweight += Σ_rows n·dout,  dbias += Σ_rows dout.

@group(0) @binding(1) var<storage, read_write> dinp: array<f32>;
@group(0) @binding(2) var<storage, read> bwdDout: array<f32>;
@group(0) @binding(3) var<storage, read> bwdInp: array<f32>;
@group(0) @binding(4) var<storage, read> bwdWeight: array<f32>;
@group(0) @binding(5) var<storage, read> bwdMean: array<f32>;
@group(0) @binding(6) var<storage, read> bwdRstd: array<f32>;

@compute @workgroup_size(WG)
fn backwardInput(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = rowIndex(wg);
  if (row >= p.N) { return; }
  let base = row * p.C;
  let mean = bwdMean[row];
  let rstd = bwdRstd[row];

  var sums = vec2(0.0); // Σ g, Σ g·n
  for (var c = lid; c < p.C; c += WG) {
    let n = (bwdInp[base + c] - mean) * rstd;
    let g = bwdWeight[c] * bwdDout[base + c];
    sums += vec2(g, g * n);
  }
  let means = workgroupSum(lid, sums) / f32(p.C);

  for (var c = lid; c < p.C; c += WG) {
    let n = (bwdInp[base + c] - mean) * rstd;
    let g = bwdWeight[c] * bwdDout[base + c];
    dinp[base + c] += (g - means.x - n * means.y) * rstd;
  }
}

// scratch[0][block][c] = Σ n·dout, scratch[1][block][c] = Σ dout over the block's rows; one thread per column.
@group(0) @binding(1) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(2) var<storage, read> colDout: array<f32>;
@group(0) @binding(3) var<storage, read> colInp: array<f32>;
@group(0) @binding(4) var<storage, read> colMean: array<f32>;
@group(0) @binding(5) var<storage, read> colRstd: array<f32>;

@compute @workgroup_size(WG)
fn columnPartials(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let block = gid.y;
  if (c >= p.C || block >= p.blocks) { return; }
  let first = block * p.rowsPerBlock;
  let last = min(first + p.rowsPerBlock, p.N);
  var dweight = 0.0;
  var dbias = 0.0;
  for (var row = first; row < last; row++) {
    let i = row * p.C + c;
    let n = (colInp[i] - colMean[row]) * colRstd[row];
    dweight += n * colDout[i];
    dbias += colDout[i];
  }
  scratch[block * p.C + c] = dweight;
  scratch[(p.blocks + block) * p.C + c] = dbias;
}

@group(0) @binding(1) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(3) var<storage, read> blockSums: array<f32>;

@compute @workgroup_size(WG)
fn columnTotals(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var dw = 0.0;
  var db = 0.0;
  for (var block = 0u; block < p.blocks; block++) {
    dw += blockSums[block * p.C + c];
    db += blockSums[(p.blocks + block) * p.C + c];
  }
  dweight[c] += dw;
  dbias[c] += db;
}
