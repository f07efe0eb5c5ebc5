// The optimizer step and the global gradient norm it clips by.
//
// adamw: torch.optim.AdamW (decoupled weight decay), elementwise over one chunk of the parameters:
//   skipped entirely when ‖g‖² is negative (the divergence guard's mark, guard.wgsl) or non-finite;
//   g = grad·clip, clip = maxNorm/(‖g‖+1e-6) if maxNorm > 0 and ‖g‖ > maxNorm else 1, ‖g‖² read from normSquared[0]
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   p = p·(1 − lr·wd) − (lr/(1−β1ᵗ))·m / (√v/√(1−β2ᵗ) + eps)
// Everything that depends only on the step (1−β, the bias corrections, the decay factor) is computed in float64
// on the CPU and passed in, so no f32 rounding of e.g. 1 − 0.999 enters the update.
//
// partialSquares + total: ‖g‖² in two deterministic passes. Workgroup g of pass 1 owns the fixed block of
// WG·ITEMS consecutive elements starting at g·WG·ITEMS (thread t sums t, t+WG, … then a fixed tree) and writes
// partials[partialBase + g]; pass 2 is one workgroup summing the partials in a fixed order. Chunks of the
// parameters are whole numbers of blocks, so the result does not depend on how the parameters were chunked.

override WG: u32 = 256u;     // a power of two
override ITEMS: u32 = 16u;   // elements per thread in pass 1

struct StepParams {
  n: u32,
  oneMinusBeta1: f32,
  beta1: f32,
  oneMinusBeta2: f32,
  beta2: f32,
  eps: f32,
  decay: f32,        // 1 − lr·weightDecay
  stepSize: f32,     // lr / (1 − β1ᵗ)
  correction2: f32,  // √(1 − β2ᵗ)
  maxNorm: f32,
}

@group(0) @binding(0) var<uniform> p: StepParams;
@group(0) @binding(1) var<storage, read_write> params: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read_write> expAvg: array<f32>;
@group(0) @binding(4) var<storage, read_write> expAvgSq: array<f32>;
@group(0) @binding(5) var<storage, read> normSquared: array<f32>;

@compute @workgroup_size(WG)
fn step(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n) { return; }
  let normSquared0 = normSquared[0];
  if (normSquared0 < 0.0 || (bitcast<u32>(normSquared0) & 0x7f800000u) == 0x7f800000u) { return; }
  var clip = 1.0;
  if (p.maxNorm > 0.0) {
    let norm = sqrt(normSquared0);
    if (norm > p.maxNorm) { clip = p.maxNorm / (norm + 1e-6); }
  }
  let g = grads[i] * clip;
  let m = p.beta1 * expAvg[i] + p.oneMinusBeta1 * g;
  let v = p.beta2 * expAvgSq[i] + p.oneMinusBeta2 * g * g;
  expAvg[i] = m;
  expAvgSq[i] = v;
  params[i] = params[i] * p.decay - p.stepSize * m / (sqrt(v) / p.correction2 + p.eps);
}

struct ReduceParams { n: u32, partialBase: u32 }

@group(0) @binding(0) var<uniform> q: ReduceParams;
@group(0) @binding(1) var<storage, read_write> sums: array<f32>;
@group(0) @binding(2) var<storage, read> terms: array<f32>;

var<workgroup> shares: array<f32, WG>;

// Tree-sums shares[] into shares[0] (every thread must call it).
fn reduceShares(lid: u32) {
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) { shares[lid] += shares[lid + stride]; }
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn partialSquares(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let block = wid.x + wid.y * 65535u;
  let first = block * WG * ITEMS;
  if (first >= q.n) { return; }
  var sum = 0.0;
  for (var j = 0u; j < ITEMS; j++) {
    let i = first + j * WG + lid;
    if (i < q.n) { sum += terms[i] * terms[i]; }
  }
  shares[lid] = sum;
  reduceShares(lid);
  if (lid == 0u) { sums[q.partialBase + block] = shares[0]; }
}

@compute @workgroup_size(WG)
fn total(@builtin(local_invocation_index) lid: u32) {
  var sum = 0.0;
  for (var i = lid; i < q.n; i += WG) { sum += terms[i]; }
  shares[lid] = sum;
  reduceShares(lid);
  if (lid == 0u) { sums[0] = shares[0]; }
}
