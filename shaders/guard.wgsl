// The training step's status, kept on the GPU so a step needs no read-back before the optimizer runs. Four words:
//   status[0]  ‖g‖² as AdamW reads it: the gradient norm recorded by adamw.wgsl, or −1 when the step must not
//              touch the weights (adamw.wgsl's `step` returns at once on a negative or non-finite value)
//   status[1]  Σ of the step's weighted losses, accumulated over its micro-batches (`addSum`)
//   status[2]  diverged: 1 once any step's loss sum or gradient norm was non-finite. Sticky, so the steps already
//              submitted behind a bad one leave the weights alone too, until the CPU has read it and stopped.
//   status[3]  ‖g‖² as computed, for the metrics (status[0] may have been replaced by −1)
// The CPU copies the four words into a mappable buffer at the end of each step and reads them a step later.
//
// addSum: status[1] += Σ terms[0…n), one workgroup: thread t sums t, t+WG, … then a fixed tree (deterministic).
// check:  runs after the gradient norm is in status[0], before AdamW.

override WG: u32 = 256u; // a power of two

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> status: array<f32>;
@group(0) @binding(2) var<storage, read> terms: array<f32>;

var<workgroup> shares: array<f32, WG>;

fn isFinite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; // exponent all ones: ±Inf or NaN
}

@compute @workgroup_size(WG)
fn addSum(@builtin(local_invocation_index) lid: u32) {
  var sum = 0.0;
  for (var i = lid; i < p.n; i += WG) { sum += terms[i]; }
  shares[lid] = sum;
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (lid < stride) { shares[lid] += shares[lid + stride]; }
  }
  if (lid == 0u) { status[1] += shares[0]; }
}

@compute @workgroup_size(1)
fn check() {
  _ = p.n; // every kernel binds the params uniform (recorder.ts)
  let normSquared = status[0];
  status[3] = normSquared;
  if (status[2] != 0.0 || !isFinite(normSquared) || !isFinite(status[1])) {
    status[2] = 1.0;
    status[0] = -1.0;
  }
}
