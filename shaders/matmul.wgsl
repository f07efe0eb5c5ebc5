// out[M,N] (= or +=) op(a)·op(b) (+ bias[N]), row-major, any M, N, K.
//   a is [M,K], or [K,M] when TRANS_A;  b is [K,N], or [N,K] when TRANS_B.
// The GPT-2 graph uses: x·W (Conv1D weights [in,out]), x·wteᵀ (TRANS_B, tied LM head), dout·Wᵀ (TRANS_B) and
// xᵀ·dout (TRANS_A, weight gradients, with accumulate).
//
// Register-blocked tiling in the style of the classic CUDA SGEMM kernels: a workgroup of WG_M×WG_N threads owns a
// BM×BN = (8·WG_M)×(8·WG_N) tile of out, each thread an 8×8 block kept in registers as 16 vec4 accumulators.
// K is walked in BK-deep slices staged in workgroup memory in k-major order (tileA[k][m], tileB[k][n]) whatever the
// transposes, so the inner loop is the same for all four variants: per k, two vec4 reads of a, two of b, 16 vec4
// FMAs. Slices are double-buffered and the next one is fetched into registers while the current one is consumed,
// so there is one barrier per slice and global loads overlap arithmetic. Loads and stores are bounds-checked
// (zero padding), which is what makes ragged M, N, K correct.
//
// Products with few output tiles but a deep K (the weight gradients, K = B·T) would leave most of the GPU idle,
// so they are split along K: workgroup layer z computes the partial product over its K range into scratch, and
// splitSum adds the layers in a fixed order (deterministic, no atomics).
//
// A thread's 8 rows are two groups of 4 (tRow·4 and BM/2 + tRow·4), likewise its columns: the vec4 reads of a
// warp then cover contiguous workgroup memory, and stores of neighbouring threads land in neighbouring columns.

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override WG_M: u32 = 16u;   // threads along M; BM = 8·WG_M
override WG_N: u32 = 16u;   // threads along N; BN = 8·WG_N
override BK: u32 = 8u;      // depth of a K slice

const HAS_BIAS = 1u;
const ACCUMULATE = 2u;
const GELU = 4u;            // also write act = gelu(out) (the MLP's fc → GELU, fused into the epilogue)
const MAX_LOADS = 16u;      // per thread per slice and operand: 8·BK/WG_N (a) and 8·BK/WG_M (b)

// kSplit: depth of K each workgroup layer z covers (split-K writes layer z of partial products to out[z·M·N …]).
struct Params { M: u32, N: u32, K: u32, flags: u32, kSplit: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> act: array<f32>;  // written only with GELU (else a dummy)

// Rows of the staged slices are padded by one vec4, so the k-strided stores of the untransposed loads spread
// over the memory banks instead of hitting one.
override THREADS: u32 = WG_M * WG_N;
override A_ROW: u32 = 2u * WG_M + 1u;  // vec4s per k row of tileA: BM/4 + 1
override B_ROW: u32 = 2u * WG_N + 1u;
var<workgroup> tileA: array<vec4<f32>, 2u * BK * A_ROW>;
var<workgroup> tileB: array<vec4<f32>, 2u * BK * B_ROW>;

var<private> ra: array<f32, MAX_LOADS>;
var<private> rb: array<f32, MAX_LOADS>;

// Element e of the BM×BK slice of op(a) starting at (row0, k0), enumerated so that consecutive threads read
// consecutive addresses: along k for an untransposed a (rows are contiguous in k), along m for a transposed one.
fn sliceA(e: u32) -> vec2<u32> {  // (m, k) within the slice
  let BM = 8u * WG_M;
  if (TRANS_A) { return vec2(e % BM, e / BM); }
  return vec2(e / BK, e % BK);
}
fn sliceB(e: u32) -> vec2<u32> {  // (n, k) within the slice
  let BN = 8u * WG_N;
  if (TRANS_B) { return vec2(e / BK, e % BK); }
  return vec2(e % BN, e / BN);
}

fn fetch(tid: u32, row0: u32, col0: u32, k0: u32, kEnd: u32) {
  let loadsA = 8u * BK / WG_N;
  for (var i = 0u; i < loadsA; i++) {
    let mk = sliceA(tid + i * THREADS);
    let m = row0 + mk.x;
    let k = k0 + mk.y;
    var v = 0.0;
    if (m < p.M && k < kEnd) { v = a[select(m * p.K + k, k * p.M + m, TRANS_A)]; }
    ra[i] = v;
  }
  let loadsB = 8u * BK / WG_M;
  for (var i = 0u; i < loadsB; i++) {
    let nk = sliceB(tid + i * THREADS);
    let n = col0 + nk.x;
    let k = k0 + nk.y;
    var v = 0.0;
    if (n < p.N && k < kEnd) { v = b[select(k * p.N + n, n * p.K + k, TRANS_B)]; }
    rb[i] = v;
  }
}

fn stage(tid: u32, buffer: u32) {
  let loadsA = 8u * BK / WG_N;
  for (var i = 0u; i < loadsA; i++) {
    let mk = sliceA(tid + i * THREADS);
    tileA[(buffer * BK + mk.y) * A_ROW + mk.x / 4u][mk.x % 4u] = ra[i];
  }
  let loadsB = 8u * BK / WG_M;
  for (var i = 0u; i < loadsB; i++) {
    let nk = sliceB(tid + i * THREADS);
    tileB[(buffer * BK + nk.y) * B_ROW + nk.x / 4u][nk.x % 4u] = rb[i];
  }
}

@compute @workgroup_size(WG_M * WG_N)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let BM = 8u * WG_M;
  let BN = 8u * WG_N;
  let row0 = wid.y * BM;
  let col0 = wid.x * BN;
  let tRow = tid / WG_N;  // this thread's rows: 4·tRow + 0..3 and BM/2 + 4·tRow + 0..3
  let tCol = tid % WG_N;  // columns likewise

  var acc: array<vec4<f32>, 16>;  // acc[2i + j] = row group i (0..7), column half j
  let kStart = wid.z * p.kSplit;
  let kEnd = min(p.K, kStart + p.kSplit);
  let slices = (kEnd - kStart + BK - 1u) / BK;

  fetch(tid, row0, col0, kStart, kEnd);
  stage(tid, 0u);
  workgroupBarrier();
  for (var s = 0u; s < slices; s++) {
    let current = s % 2u;
    let more = s + 1u < slices;
    if (more) { fetch(tid, row0, col0, kStart + (s + 1u) * BK, kEnd); }
    for (var k = 0u; k < BK; k++) {
      let ar = (current * BK + k) * A_ROW;
      let br = (current * BK + k) * B_ROW;
      let a0 = tileA[ar + tRow];
      let a1 = tileA[ar + WG_M + tRow];
      let b0 = tileB[br + tCol];
      let b1 = tileB[br + WG_N + tCol];
      acc[0] = fma(vec4(a0.x), b0, acc[0]);
      acc[1] = fma(vec4(a0.x), b1, acc[1]);
      acc[2] = fma(vec4(a0.y), b0, acc[2]);
      acc[3] = fma(vec4(a0.y), b1, acc[3]);
      acc[4] = fma(vec4(a0.z), b0, acc[4]);
      acc[5] = fma(vec4(a0.z), b1, acc[5]);
      acc[6] = fma(vec4(a0.w), b0, acc[6]);
      acc[7] = fma(vec4(a0.w), b1, acc[7]);
      acc[8] = fma(vec4(a1.x), b0, acc[8]);
      acc[9] = fma(vec4(a1.x), b1, acc[9]);
      acc[10] = fma(vec4(a1.y), b0, acc[10]);
      acc[11] = fma(vec4(a1.y), b1, acc[11]);
      acc[12] = fma(vec4(a1.z), b0, acc[12]);
      acc[13] = fma(vec4(a1.z), b1, acc[13]);
      acc[14] = fma(vec4(a1.w), b0, acc[14]);
      acc[15] = fma(vec4(a1.w), b1, acc[15]);
    }
    if (more) { stage(tid, 1u - current); }
    workgroupBarrier();
  }

  // Constant accumulator indices throughout, so acc stays in registers on every compiler.
  let rowA = row0 + 4u * tRow;
  let rowB = rowA + BM / 2u;
  let colA = col0 + 4u * tCol;
  let colB = colA + BN / 2u;
  let layer = wid.z * p.M * p.N;
  store(layer, rowA, colA, colB, acc[0], acc[1]);
  store(layer, rowA + 1u, colA, colB, acc[2], acc[3]);
  store(layer, rowA + 2u, colA, colB, acc[4], acc[5]);
  store(layer, rowA + 3u, colA, colB, acc[6], acc[7]);
  store(layer, rowB, colA, colB, acc[8], acc[9]);
  store(layer, rowB + 1u, colA, colB, acc[10], acc[11]);
  store(layer, rowB + 2u, colA, colB, acc[12], acc[13]);
  store(layer, rowB + 3u, colA, colB, acc[14], acc[15]);
}

// Writes out[m, colA…colA+3] = left and out[m, colB…colB+3] = right (plus bias, plus what is there when
// accumulating), skipping what lies outside out.
fn store(layer: u32, m: u32, colA: u32, colB: u32, left: vec4<f32>, right: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var c = 0u; c < 4u; c++) {
    storeOne(layer, m, colA + c, left[c]);
    storeOne(layer, m, colB + c, right[c]);
  }
}

fn storeOne(layer: u32, m: u32, n: u32, value: f32) {
  if (n >= p.N) { return; }
  var r = value;
  if ((p.flags & HAS_BIAS) != 0u) { r += bias[n]; }
  let index = layer + m * p.N + n;
  if ((p.flags & ACCUMULATE) != 0u) { r += out[index]; }
  out[index] = r;
  if ((p.flags & GELU) != 0u) { act[index] = gelu(r); }
}

// GPT-2's tanh GELU exactly as shaders/gelu.wgsl computes it (WGSL has no includes; the fused and the unfused
// paths are tested against each other), x clamped to ±10 where it is x or 0 to f32 precision.
fn gelu(x: f32) -> f32 {
  let c = clamp(x, -10.0, 10.0);
  let t = tanh(0.7978845608028654 * (c + 0.044715 * c * c * c));
  return 0.5 * x * (1.0 + t);
}

// ---- Register-tiled variant, for software adapters (llvmpipe, SwiftShader) ----
// These run a workgroup on one CPU thread, its invocations as the lanes of SIMD vectors; workgroup memory is
// ordinary memory and every barrier a switch between invocation groups, so the staging of the tiled kernel above
// buys little there. Here a workgroup of RT_LANES invocations owns 8 rows × 8·RT_LANES columns of out, each
// invocation an 8×8 block (16 vec4 accumulators, as in main): columns 4·lane + 0..3 and 4·(RT_LANES + lane) + 0..3
// of the workgroup's span, so neighbouring lanes read neighbouring addresses of b. a's elements depend only on the
// workgroup and k, so all lanes read the same address (a uniform load: one scalar broadcast to the vector); the
// CPU's caches do the staging. Out-of-range rows and columns read clamped (valid) addresses and skip their stores,
// so the inner loop has no branches. Split-K works as in main (layer wid.z covers kSplit of K).
override RT_LANES: u32 = 16u;  // invocations per workgroup, 8 columns each

fn aAt(m: u32, k: u32) -> f32 { return a[select(m * p.K + k, k * p.M + m, TRANS_A)]; }
fn bAt(k: u32, n: u32) -> f32 { return b[select(k * p.N + n, n * p.K + k, TRANS_B)]; }
fn bQuad(k: u32, c: vec4<u32>) -> vec4<f32> { return vec4(bAt(k, c.x), bAt(k, c.y), bAt(k, c.z), bAt(k, c.w)); }

@compute @workgroup_size(RT_LANES)
fn registerTiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
  let row0 = wid.y * 8u;
  let colA = wid.x * 8u * RT_LANES + 4u * lane;
  let colB = colA + 4u * RT_LANES;
  let last = vec4(p.N - 1u);
  let ca = min(vec4(colA) + vec4(0u, 1u, 2u, 3u), last);
  let cb = min(vec4(colB) + vec4(0u, 1u, 2u, 3u), last);
  let m0 = min(row0 + 0u, p.M - 1u);
  let m1 = min(row0 + 1u, p.M - 1u);
  let m2 = min(row0 + 2u, p.M - 1u);
  let m3 = min(row0 + 3u, p.M - 1u);
  let m4 = min(row0 + 4u, p.M - 1u);
  let m5 = min(row0 + 5u, p.M - 1u);
  let m6 = min(row0 + 6u, p.M - 1u);
  let m7 = min(row0 + 7u, p.M - 1u);
  let kStart = wid.z * p.kSplit;
  let kEnd = min(p.K, kStart + p.kSplit);

  // Constant accumulator indices throughout, so acc stays in registers (acc[2r + j]: row r, column half j).
  var acc: array<vec4<f32>, 16>;
  for (var k = kStart; k < kEnd; k++) {
    let b0 = bQuad(k, ca);
    let b1 = bQuad(k, cb);
    let a0 = vec4(aAt(m0, k));
    acc[0] = fma(a0, b0, acc[0]);
    acc[1] = fma(a0, b1, acc[1]);
    let a1 = vec4(aAt(m1, k));
    acc[2] = fma(a1, b0, acc[2]);
    acc[3] = fma(a1, b1, acc[3]);
    let a2 = vec4(aAt(m2, k));
    acc[4] = fma(a2, b0, acc[4]);
    acc[5] = fma(a2, b1, acc[5]);
    let a3 = vec4(aAt(m3, k));
    acc[6] = fma(a3, b0, acc[6]);
    acc[7] = fma(a3, b1, acc[7]);
    let a4 = vec4(aAt(m4, k));
    acc[8] = fma(a4, b0, acc[8]);
    acc[9] = fma(a4, b1, acc[9]);
    let a5 = vec4(aAt(m5, k));
    acc[10] = fma(a5, b0, acc[10]);
    acc[11] = fma(a5, b1, acc[11]);
    let a6 = vec4(aAt(m6, k));
    acc[12] = fma(a6, b0, acc[12]);
    acc[13] = fma(a6, b1, acc[13]);
    let a7 = vec4(aAt(m7, k));
    acc[14] = fma(a7, b0, acc[14]);
    acc[15] = fma(a7, b1, acc[15]);
  }

  let layer = wid.z * p.M * p.N;
  store(layer, row0 + 0u, colA, colB, acc[0], acc[1]);
  store(layer, row0 + 1u, colA, colB, acc[2], acc[3]);
  store(layer, row0 + 2u, colA, colB, acc[4], acc[5]);
  store(layer, row0 + 3u, colA, colB, acc[6], acc[7]);
  store(layer, row0 + 4u, colA, colB, acc[8], acc[9]);
  store(layer, row0 + 5u, colA, colB, acc[10], acc[11]);
  store(layer, row0 + 6u, colA, colB, acc[12], acc[13]);
  store(layer, row0 + 7u, colA, colB, acc[14], acc[15]);
}

// Split-K epilogue: out[i] (= or +=) Σ_z partials[z·count + i] in order of z (+ bias[i mod N]); act[i] = gelu(out[i])
// with GELU.
struct SplitParams { count: u32, N: u32, splits: u32, flags: u32 }
@group(0) @binding(0) var<uniform> sp: SplitParams;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read> splitBias: array<f32>;
@group(0) @binding(4) var<storage, read_write> splitAct: array<f32>;  // written only with GELU

@compute @workgroup_size(256)
fn splitSum(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * 256u;
  if (i >= sp.count) { return; }
  var r = 0.0;
  for (var z = 0u; z < sp.splits; z++) { r += partials[z * sp.count + i]; }
  if ((sp.flags & HAS_BIAS) != 0u) { r += splitBias[i % sp.N]; }
  if ((sp.flags & ACCUMULATE) != 0u) { r += out[i]; }
  out[i] = r;
  if ((sp.flags & GELU) != 0u) { splitAct[i] = gelu(r); }
}

// biasBackward, deterministically in two passes. Pass 1: workgroup (x, y) sums rows y·ROWS … y·ROWS+ROWS−1 of
// columns x·COLS … for a COLS×LANES workgroup (each lane a strided subset of the rows, then a fixed tree over
// lanes) into partial[y, n]. Pass 2: dbias[n] += Σ_y partial[y, n] in order.
override COLS: u32 = 32u;
override LANES: u32 = 8u;
override ROWS: u32 = 256u;

struct ColumnParams { M: u32, N: u32, blocks: u32 }
@group(0) @binding(0) var<uniform> q: ColumnParams;
@group(0) @binding(1) var<storage, read_write> partial: array<f32>;  // [blocks, N]; dbias in pass 2
@group(0) @binding(2) var<storage, read> dout: array<f32>;           // [M, N]; partials in pass 2

var<workgroup> lanes: array<f32, COLS * LANES>;

@compute @workgroup_size(COLS, LANES)
fn columnPartials(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = wid.x * COLS + lid.x;
  let first = wid.y * ROWS;
  let last = min(first + ROWS, q.M);
  var sum = 0.0;
  if (n < q.N) {
    for (var m = first + lid.y; m < last; m += LANES) { sum += dout[m * q.N + n]; }
  }
  lanes[lid.y * COLS + lid.x] = sum;
  for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid.y < stride) { lanes[lid.y * COLS + lid.x] += lanes[(lid.y + stride) * COLS + lid.x]; }
  }
  if (lid.y == 0u && n < q.N) { partial[wid.y * q.N + n] = lanes[lid.x]; }
}

@compute @workgroup_size(COLS * LANES)
fn columnTotals(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  if (n >= q.N) { return; }
  var sum = 0.0;
  for (var y = 0u; y < q.blocks; y++) { sum += dout[y * q.N + n]; }
  partial[n] += sum;
}
