// Soft-capping (Gemma 2's attention scores and logits): x → cap·tanh(x/cap), in place, and its backward
// d → d·(1 − (y/cap)²) from the capped values y the forward pass left (saved by the caller before they are consumed).
// tanh saturates to ±1 for large |x|/cap, so the result stays within ±cap and never overflows.
// One thread per element, 1-D grid folded into x/y (see residual.wgsl).

override WG: u32 = 256u;

struct Params { n: u32, cap: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> values: array<f32>;
@group(0) @binding(2) var<storage, read> capped: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i < p.n) { values[i] = p.cap * tanh(clamp(values[i] / p.cap, -20.0, 20.0)); }
}

// values = gradients with respect to the capped values, made gradients with respect to the raw ones.
@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n) { return; }
  let t = capped[i] / p.cap;
  values[i] *= 1.0 - t * t;
}
