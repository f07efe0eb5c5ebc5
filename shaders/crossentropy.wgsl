// The LM head's cross-entropy, fused and chunked (the dispatcher is src/gpu/kernels/crossentropy.ts). No [N, V]
// logits tensor exists: the head runs only on a compact list of rows (the positions whose loss weight is non-zero,
// or the rows a caller asks logits for), a chunk of R rows at a time, and the chunk's logits are kept transposed,
// logitsT[V, R] (vocabulary-major), so that the matmuls producing them can write each vocabulary slice of the
// head weight's rows as one dense block (no leading-dimension option needed) and bind W a vocabulary slice at a
// time. Per chunk:
//   gatherRows   x[i, :] = source[rows[first + i], :]                     (the final norm's output, compacted)
//   (matmul)     logitsT[v0:v1, :] = W[v0:v1] · xᵀ                        per vocabulary slice
//   columns      z = cap·tanh((logitsT + bias)/cap) (or no cap), kept in logitsT; then, per column (row):
//                losses[row] = w·(logsumexp(z) − z[target]); with GRADIENT, logitsT is overwritten by
//                dL/d(raw logits) = w·gradScale·(softmax(z) − onehot)·(1 − (z/cap)²)
//   (matmul)     dx = logitsTᵀ·W, dW[v0:v1] += logitsT[v0:v1]·x            per vocabulary slice
//   rowSums      dbias[v] += Σ_i logitsT[v, i]
//   scatterRows  dsource[rows[first + i], :] = dx[i, :]
// Every reduction has a fixed order (no atomics), so results are deterministic. Exponents are always ≤ 0 after
// max subtraction, so nothing overflows; a column of weight 0 gets loss 0 and gradient 0 exactly.
//
// u32 indices: v·R + i < V·R, the logits chunk's size in floats, and rows[·]·C + c < N·C, the source's; both
// buffers are bound whole and within the binding limit, so every index fits (see src/gpu/chunks.ts).

override COLS: u32 = 16u;   // columns (rows of the batch) per workgroup of `columns`
override LANES: u32 = 16u;  // threads sharing one column's vocabulary walk; a power of two
override WG: u32 = 256u;    // threads of the 1-D kernels

const LOSS = 1u;            // flags: write losses[rows[·]]
const GRADIENT = 2u;        //        overwrite the logits by their gradient (needs LOSS)
const LOWEST = -3.0e38;     // stands in for −∞, so merging two empty shares cannot produce NaN

// ---- gatherRows / scatterRows: one thread per element of the compact [count, C] tensor ----

struct RowParams { count: u32, C: u32, first: u32 }

@group(0) @binding(0) var<uniform> rp: RowParams;
@group(0) @binding(1) var<storage, read_write> rowsOut: array<f32>;
@group(0) @binding(2) var<storage, read> rowsIn: array<f32>;
@group(0) @binding(3) var<storage, read> rowList: array<u32>;

@compute @workgroup_size(WG)
fn gatherRows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let e = gid.x + gid.y * 65535u * WG;
  if (e >= rp.count * rp.C) { return; }
  let i = e / rp.C;
  rowsOut[e] = rowsIn[rowList[rp.first + i] * rp.C + e % rp.C];
}

@compute @workgroup_size(WG)
fn scatterRows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let e = gid.x + gid.y * 65535u * WG;
  if (e >= rp.count * rp.C) { return; }
  let i = e / rp.C;
  rowsOut[rowList[rp.first + i] * rp.C + e % rp.C] = rowsIn[e];
}

// ---- columns: softcap, log-sum-exp, loss and gradient of each column of logitsT[V, R] ----
// A workgroup owns COLS adjacent columns; thread (col, lane) walks v = lane, lane + LANES, … of its column, so
// neighbouring threads read neighbouring addresses. Each keeps an online (max, Σ exp(z − max)) pair, merged over
// the lanes in a fixed tree.

struct ColumnParams { V: u32, R: u32, first: u32, flags: u32, gradScale: f32, cap: f32, hasBias: u32 }

@group(0) @binding(0) var<uniform> cp: ColumnParams;
@group(0) @binding(1) var<storage, read_write> logitsT: array<f32>;
@group(0) @binding(2) var<storage, read_write> losses: array<f32>;
@group(0) @binding(3) var<storage, read> rows: array<u32>;
@group(0) @binding(4) var<storage, read> targets: array<u32>;
@group(0) @binding(5) var<storage, read> weights: array<f32>;
@group(0) @binding(6) var<storage, read> bias: array<f32>;

var<workgroup> shareMax: array<f32, COLS * LANES>;
var<workgroup> shareSum: array<f32, COLS * LANES>;

@compute @workgroup_size(COLS * LANES)
fn columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let col = lid % COLS;
  let lane = lid / COLS;
  let column = (wid.x + wid.y * 65535u) * COLS + col;
  let inRange = column < cp.R;   // inactive threads still take part in the barriers

  var m = LOWEST;
  var s = 0.0;
  if (inRange) {
    for (var v = lane; v < cp.V; v += LANES) {
      let at = v * cp.R + column;
      var z = logitsT[at];
      if (cp.hasBias == 1u) { z += bias[v]; }
      if (cp.cap > 0.0) { z = cp.cap * tanh(clamp(z / cp.cap, -20.0, 20.0)); }
      logitsT[at] = z;
      if (z > m) {
        s = s * exp(m - z) + 1.0;
        m = z;
      } else {
        s += exp(z - m);
      }
    }
  }
  if ((cp.flags & LOSS) == 0u) { return; } // logits only (uniform: the same for the whole dispatch)
  shareMax[lid] = m;
  shareSum[lid] = s;
  for (var stride = LANES / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lane < stride) {
      let other = lid + stride * COLS;
      let m1 = shareMax[lid];
      let m2 = shareMax[other];
      let top = max(m1, m2);
      shareSum[lid] = shareSum[lid] * exp(m1 - top) + shareSum[other] * exp(m2 - top);
      shareMax[lid] = top;
    }
  }
  workgroupBarrier();
  // every thread's writes of z above become visible to the rest of its workgroup
  storageBarrier();
  // logsumexp = top + log(total); kept apart, so neither the loss nor the probabilities round through the sum's
  // magnitude: loss = (top − z[goal]) + log(total), softmax = exp(z − top) / total
  let top = shareMax[col];
  let total = shareSum[col];
  var goal = 0u;
  var weight = 0.0;
  if (inRange) {
    let row = rows[cp.first + column];
    goal = targets[row];
    weight = weights[row];
    if (lane == 0u) {
      losses[row] = select(weight * ((top - logitsT[goal * cp.R + column]) + log(total)), 0.0, weight == 0.0);
    }
  }
  if ((cp.flags & GRADIENT) == 0u) { return; }
  // lane 0 has read z[goal] before this barrier; only after it may the lane owning z[goal] overwrite it
  storageBarrier();
  if (!inRange) { return; }
  let scale = weight * cp.gradScale;
  for (var v = lane; v < cp.V; v += LANES) {
    let at = v * cp.R + column;
    let z = logitsT[at];
    var g = scale * (exp(z - top) / total - select(0.0, 1.0, v == goal));
    if (cp.cap > 0.0) {
      let t = z / cp.cap;
      g *= 1.0 - t * t;
    }
    logitsT[at] = select(g, 0.0, weight == 0.0);
  }
}

// ---- rowSums: dbias[v] += Σ_i logitsT[v, i] (the head bias gradient), one thread per vocabulary entry ----

struct SumParams { V: u32, R: u32 }

@group(0) @binding(0) var<uniform> sp: SumParams;
@group(0) @binding(1) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;

@compute @workgroup_size(WG)
fn rowSums(@builtin(global_invocation_id) gid: vec3<u32>) {
  let v = gid.x + gid.y * 65535u * WG;
  if (v >= sp.V) { return; }
  var sum = 0.0;
  for (var i = 0u; i < sp.R; i++) { sum += grads[v * sp.R + i]; }
  dbias[v] += sum;
}
