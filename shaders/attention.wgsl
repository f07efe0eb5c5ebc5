// Causal multi-head self-attention with grouped key/value heads (GQA; MQA when there is one, MHA when there are
// NH), flash-style: the T×T scores and probabilities are never stored. Query head h attends with key/value head
// h / group, group = NH / (number of kv heads). Scores s_ij = scale·q_i·k_j, soft-capped to cap·tanh(s/cap) when
// cap > 0 (Gemma 2), softmax over j ≤ i.
//
//   forward             one invocation per query row i of head h: walks the keys j ≤ i KB at a time with an online
//                       softmax (running max m and sum l, the output accumulator rescaled when m grows), writes
//                       out_i = Σ_j p_ij·v_j and the row's statistics (m_i, 1/l_i), saved for the backward pass.
//   queryGradients      one invocation per query row, recomputing p_ij = exp(s_ij − m_i)/l_i: a first walk over the
//                       keys j ≤ i sums D_i = Σ_j p_ij·dp_ij (dp_ij = dout_i·v_j), saved for the next kernel; a
//                       second one sums dq_i = scale·Σ_j ds_ij·k_j with ds_ij = p_ij·(dp_ij − D_i)·cap'(s_ij).
//   keyValueGradients   one invocation per key row j of kv head g: over the group's query heads and the queries
//                       i ≥ j, recomputing p_ij and ds_ij as above: dv_j = Σ p_ij·dout_i, dk_j = scale·Σ ds_ij·q_i.
// (FlashAttention-2's backward, with dq in its own pass instead of atomics.) Every sum runs in a fixed order, so
// results are deterministic. cap'(s) = 1 − (s/cap)², from the recomputed capped score.
//
// Precision: FlashAttention saves one log-sum-exp per row and takes D = dout·out; here p is recomputed from (m, 1/l)
// (exp(s − lse) loses |lse|·ε of p) and D from the same p and dp that ds uses (dout·out differs from Σ p·dp by
// rounding, which dp − D then magnifies). Either alone doubled the rounding error of dq against float64 in
// test/gpu/kernels/attention.test.ts's shapes; both together match the kernels that stored the probabilities.
//
// Register-friendly for llvmpipe, which runs each invocation as a SIMD lane and makes workgroup memory and barriers
// costly: no workgroup memory, no barriers. The row an invocation owns (q_i or k_j, v_j, and its accumulators) lives
// in private arrays; the rows it walks (k_j, v_j or q_i, dout_i) are the same for every invocation of a workgroup at
// each step (loop bounds are the workgroup's, rows outside the causal triangle masked), so those loads are shared
// through the cache. Walking KB rows per step reads each private element once per KB rows.
//
// Head views: for a tensor [B,T,stride] and a column offset, head (b,h) is the T×hs matrix at columns
// offset + h·hs, so q, k and v are read straight out of a fused qkv projection, and dq, dk, dv written into one.
// Grids are (⌈T/WG⌉, heads, B): query heads for forward and queryGradients, kv heads for keyValueGradients.

override WG: u32 = 32u;         // rows per workgroup
const MAX_HS: u32 = 256u;       // largest head size (Gemma's); private arrays are sized for it
const KB: u32 = 8u;             // rows walked per step
const LOWEST: f32 = -3.4028234e38;

struct Params {
  T: u32,
  NH: u32,
  hs: u32,
  group: u32,     // query heads per key/value head
  qStride: u32,   // head views: row stride and first column, in floats
  qOffset: u32,
  kStride: u32,
  kOffset: u32,
  vStride: u32,
  vOffset: u32,
  gStride: u32,   // the gradient a backward kernel writes: dq (queryGradients) or dk (keyValueGradients)
  gOffset: u32,
  dvStride: u32,  // dv (keyValueGradients)
  dvOffset: u32,
  scale: f32,
  cap: f32,       // soft-cap; 0: none
}

// Bindings per entry point (a number is reused by entry points that never meet):
//   forward             q k v | out statsOut
//   queryGradients      q k v dout stats | dqOut deltaOut
//   keyValueGradients   q k v dout stats delta | grad (dk) dvOut;   …Shared: | grad (dk and dv)
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qs: array<f32>;
@group(0) @binding(2) var<storage, read> ks: array<f32>;
@group(0) @binding(3) var<storage, read> vs: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;       // [B,T,NH·hs]
@group(0) @binding(5) var<storage, read_write> statsOut: array<f32>;  // [B,NH,T,2]: m, 1/l
@group(0) @binding(4) var<storage, read> dout: array<f32>;            // [B,T,NH·hs]
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> dqOut: array<f32>;
@group(0) @binding(7) var<storage, read_write> deltaOut: array<f32>;  // [B,NH,T]: D
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read_write> grad: array<f32>;
@group(0) @binding(8) var<storage, read_write> dvOut: array<f32>;

alias Row = array<f32, MAX_HS>;
alias Block = array<f32, KB>;

// First element of row `row` of head `head` of batch row b in a [B,T,stride] view whose head columns start at offset.
fn rowStart(stride: u32, offset: u32, b: u32, head: u32, row: u32) -> u32 {
  return (b * p.T + row) * stride + offset + head * p.hs;
}

fn denseRow(b: u32, h: u32, row: u32) -> u32 {
  return rowStart(p.NH * p.hs, 0u, b, h, row);
}

fn statIndex(b: u32, h: u32, row: u32) -> u32 {
  return (b * p.NH + h) * p.T + row;
}

fn capScore(raw: f32) -> f32 {
  if (p.cap > 0.0) { return p.cap * tanh(clamp(raw / p.cap, -20.0, 20.0)); }
  return raw;
}

// d capScore / d raw, from the capped score.
fn capSlope(capped: f32) -> f32 {
  if (p.cap > 0.0) {
    let t = capped / p.cap;
    return 1.0 - t * t;
  }
  return 1.0;
}

// Rows walked past T are read as row T−1 (in bounds) and masked out of every sum. Accumulators are cleared
// explicitly: a `var` declared in a loop body was not zeroed again on each iteration here (Dawn on llvmpipe),
// although WGSL says it should be.
fn clampRow(row: u32) -> u32 {
  return min(row, p.T - 1u);
}

// Where rows j0 … j0+KB−1 of head `head` start in a view.
fn blockRows(stride: u32, offset: u32, b: u32, head: u32, j0: u32) -> array<u32, KB> {
  var rows: array<u32, KB>;
  for (var c = 0u; c < KB; c++) { rows[c] = rowStart(stride, offset, b, head, clampRow(j0 + c)); }
  return rows;
}

// Capped, scaled scores of query row q against keys j0 … j0+KB−1 of kv head g.
fn scores(q: ptr<function, Row>, b: u32, g: u32, j0: u32) -> Block {
  let kRow = blockRows(p.kStride, p.kOffset, b, g, j0);
  var s: Block;
  for (var c = 0u; c < KB; c++) { s[c] = 0.0; }
  for (var d = 0u; d < p.hs; d++) {
    let qd = (*q)[d];
    for (var c = 0u; c < KB; c++) { s[c] += qd * ks[kRow[c] + d]; }
  }
  for (var c = 0u; c < KB; c++) { s[c] = capScore(s[c] * p.scale); }
  return s;
}

// dp_ij = dout_i·v_j for keys j0 … j0+KB−1 of kv head g.
fn valueDots(dO: ptr<function, Row>, b: u32, g: u32, j0: u32) -> Block {
  let vRow = blockRows(p.vStride, p.vOffset, b, g, j0);
  var dp: Block;
  for (var c = 0u; c < KB; c++) { dp[c] = 0.0; }
  for (var d = 0u; d < p.hs; d++) {
    let gd = (*dO)[d];
    for (var c = 0u; c < KB; c++) { dp[c] += gd * vs[vRow[c] + d]; }
  }
  return dp;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.z;
  let h = wg.y;
  let g = h / p.group;
  let i = wg.x * WG + lid;
  var q: Row;
  var o: Row;
  let qBase = rowStart(p.qStride, p.qOffset, b, h, clampRow(i));
  for (var d = 0u; d < p.hs; d++) {
    q[d] = qs[qBase + d];
    o[d] = 0.0;
  }
  var m = LOWEST;
  var l = 0.0;
  let end = min(wg.x * WG + WG, p.T); // the workgroup's last row sees keys < end
  for (var j0 = 0u; j0 < end; j0 += KB) {
    var s = scores(&q, b, g, j0);
    var blockMax = m;
    for (var c = 0u; c < KB; c++) {
      if (j0 + c <= i) { blockMax = max(blockMax, s[c]); }
    }
    let alpha = exp(m - blockMax); // rescales what was summed under the old max (0 on the first step)
    var sum = 0.0;
    for (var c = 0u; c < KB; c++) {
      s[c] = select(0.0, exp(s[c] - blockMax), j0 + c <= i); // ≤ 1: large scores cannot overflow
      sum += s[c];
    }
    l = l * alpha + sum;
    m = blockMax;
    let vRow = blockRows(p.vStride, p.vOffset, b, g, j0);
    for (var d = 0u; d < p.hs; d++) {
      var acc = o[d] * alpha;
      for (var c = 0u; c < KB; c++) { acc += s[c] * vs[vRow[c] + d]; }
      o[d] = acc;
    }
  }
  if (i >= p.T) { return; }
  let norm = 1.0 / l; // l ≥ 1: the max term is e⁰
  let oBase = denseRow(b, h, i);
  for (var d = 0u; d < p.hs; d++) { out[oBase + d] = o[d] * norm; }
  statsOut[2u * statIndex(b, h, i)] = m;
  statsOut[2u * statIndex(b, h, i) + 1u] = norm;
}

@compute @workgroup_size(WG)
fn queryGradients(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wg.z;
  let h = wg.y;
  let g = h / p.group;
  let i = wg.x * WG + lid;
  let row = clampRow(i);
  var q: Row;
  var dO: Row;
  var dq: Row;
  let qBase = rowStart(p.qStride, p.qOffset, b, h, row);
  let oBase = denseRow(b, h, row);
  for (var d = 0u; d < p.hs; d++) {
    q[d] = qs[qBase + d];
    dO[d] = dout[oBase + d];
    dq[d] = 0.0;
  }
  let rowMax = stats[2u * statIndex(b, h, row)];
  let rowNorm = stats[2u * statIndex(b, h, row) + 1u];
  let end = min(wg.x * WG + WG, p.T);
  var D = 0.0;
  for (var j0 = 0u; j0 < end; j0 += KB) {
    let s = scores(&q, b, g, j0);
    let dp = valueDots(&dO, b, g, j0);
    for (var c = 0u; c < KB; c++) { D += select(0.0, exp(s[c] - rowMax) * rowNorm, j0 + c <= i) * dp[c]; }
  }
  for (var j0 = 0u; j0 < end; j0 += KB) {
    let s = scores(&q, b, g, j0);
    let dp = valueDots(&dO, b, g, j0);
    var ds: Block;
    for (var c = 0u; c < KB; c++) {
      let prob = select(0.0, exp(s[c] - rowMax) * rowNorm, j0 + c <= i);
      ds[c] = prob * (dp[c] - D) * capSlope(s[c]);
    }
    let kRow = blockRows(p.kStride, p.kOffset, b, g, j0);
    for (var d = 0u; d < p.hs; d++) {
      var acc = dq[d];
      for (var c = 0u; c < KB; c++) { acc += ds[c] * ks[kRow[c] + d]; }
      dq[d] = acc;
    }
  }
  if (i >= p.T) { return; }
  let gBase = rowStart(p.gStride, p.gOffset, b, h, i);
  for (var d = 0u; d < p.hs; d++) { dqOut[gBase + d] = dq[d] * p.scale; }
  deltaOut[statIndex(b, h, i)] = D;
}

// dk_j (unscaled) and dv_j of key row j of kv head g into the private rows; start: the workgroup's first key.
fn keyValueSums(b: u32, g: u32, j: u32, start: u32, dk: ptr<function, Row>, dv: ptr<function, Row>) {
  var kj: Row;
  var vj: Row;
  let kBase = rowStart(p.kStride, p.kOffset, b, g, clampRow(j));
  let vBase = rowStart(p.vStride, p.vOffset, b, g, clampRow(j));
  for (var d = 0u; d < p.hs; d++) {
    kj[d] = ks[kBase + d];
    vj[d] = vs[vBase + d];
    (*dk)[d] = 0.0;
    (*dv)[d] = 0.0;
  }
  for (var m = 0u; m < p.group; m++) {
    let h = g * p.group + m;
    for (var i0 = start; i0 < p.T; i0 += KB) { // causal: queries before the workgroup's first key see none of its keys
      let qRow = blockRows(p.qStride, p.qOffset, b, h, i0);
      let oRow = blockRows(p.NH * p.hs, 0u, b, h, i0);
      var s: Block;
      var dp: Block;
      for (var c = 0u; c < KB; c++) {
        s[c] = 0.0;
        dp[c] = 0.0;
      }
      for (var d = 0u; d < p.hs; d++) {
        let kd = kj[d];
        let vd = vj[d];
        for (var c = 0u; c < KB; c++) {
          s[c] += kd * qs[qRow[c] + d];
          dp[c] += vd * dout[oRow[c] + d];
        }
      }
      var prob: Block;
      for (var c = 0u; c < KB; c++) {
        let stat = statIndex(b, h, clampRow(i0 + c));
        let capped = capScore(s[c] * p.scale);
        prob[c] = select(0.0, exp(capped - stats[2u * stat]) * stats[2u * stat + 1u], i0 + c >= j && i0 + c < p.T);
        s[c] = prob[c] * (dp[c] - delta[stat]) * capSlope(capped); // ds
      }
      for (var d = 0u; d < p.hs; d++) {
        var accK = (*dk)[d];
        var accV = (*dv)[d];
        for (var c = 0u; c < KB; c++) {
          accK += s[c] * qs[qRow[c] + d];
          accV += prob[c] * dout[oRow[c] + d];
        }
        (*dk)[d] = accK;
        (*dv)[d] = accV;
      }
    }
  }
}

@compute @workgroup_size(WG)
fn keyValueGradients(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = wg.x * WG + lid;
  var dk: Row;
  var dv: Row;
  keyValueSums(wg.z, wg.y, j, wg.x * WG, &dk, &dv);
  if (j >= p.T) { return; }
  let kBase = rowStart(p.gStride, p.gOffset, wg.z, wg.y, j);
  let vBase = rowStart(p.dvStride, p.dvOffset, wg.z, wg.y, j);
  for (var d = 0u; d < p.hs; d++) {
    grad[kBase + d] = dk[d] * p.scale;
    dvOut[vBase + d] = dv[d];
  }
}

// The same, dk and dv written through one binding (views of one buffer, as in a fused dqkv: two writable bindings
// of one buffer would alias).
@compute @workgroup_size(WG)
fn keyValueGradientsShared(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = wg.x * WG + lid;
  var dk: Row;
  var dv: Row;
  keyValueSums(wg.z, wg.y, j, wg.x * WG, &dk, &dv);
  if (j >= p.T) { return; }
  let kBase = rowStart(p.gStride, p.gOffset, wg.z, wg.y, j);
  let vBase = rowStart(p.dvStride, p.dvOffset, wg.z, wg.y, j);
  for (var d = 0u; d < p.hs; d++) {
    grad[kBase + d] = dk[d] * p.scale;
    grad[vBase + d] = dv[d];
  }
}
