// Weighted softmax cross-entropy over the rows of logits[N,V], one workgroup per row (V is up to 50257, so a row
// is spread over the workgroup's threads and reduced through workgroup memory in a fixed tree order):
//   losses[i] = w_i·(logsumexp(logits_i) − logits_i[target_i])
// and, when gradScale ≠ 0, logits_i is overwritten in place by its gradient w_i·gradScale·(softmax(logits_i) − onehot).
// Each thread keeps an online (running max, Σ exp(x − max)) pair over its strided share of the row, so the row is
// read once for the loss and once more for the gradient; exponents are always ≤ 0, so nothing overflows.
// A row of weight 0 gets loss 0 and gradient 0 exactly, whatever its logits hold.

override WG: u32 = 256u;   // a power of two

struct Params { N: u32, V: u32, gradScale: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> losses: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;
@group(0) @binding(4) var<storage, read> weights: array<f32>;

const LOWEST = -3.0e38; // stands in for −∞, so merging two empty shares cannot produce NaN

var<workgroup> rowMax: array<f32, WG>;
var<workgroup> rowSum: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * 65535u;
  if (row >= p.N) { return; }
  let base = row * p.V;

  var m = LOWEST;
  var s = 0.0;
  for (var j = lid; j < p.V; j += WG) {
    let x = logits[base + j];
    if (x > m) {
      s = s * exp(m - x) + 1.0;
      m = x;
    } else {
      s += exp(x - m);
    }
  }
  rowMax[lid] = m;
  rowSum[lid] = s;
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) {
      let m1 = rowMax[lid];
      let m2 = rowMax[lid + stride];
      let top = max(m1, m2);
      rowSum[lid] = rowSum[lid] * exp(m1 - top) + rowSum[lid + stride] * exp(m2 - top);
      rowMax[lid] = top;
    }
  }
  workgroupBarrier();
  let logSumExp = rowMax[0] + log(rowSum[0]);
  let goal = targets[row];
  let weight = weights[row];
  if (lid == 0u) {
    losses[row] = select(weight * (logSumExp - logits[base + goal]), 0.0, weight == 0.0);
  }
  if (p.gradScale == 0.0) { return; }
  // Every read of this row above happens before any thread overwrites it.
  storageBarrier();
  let scale = weight * p.gradScale;
  for (var j = lid; j < p.V; j += WG) {
    let prob = exp(logits[base + j] - logSumExp);
    let g = scale * (prob - select(0.0, 1.0, j == goal));
    logits[base + j] = select(g, 0.0, weight == 0.0);
  }
}
