// Residual connection: out = a + b, elementwise. Backward needs no kernel of its own: the gradient flows
// unchanged to both inputs (the model accumulates it with `accumulate`: dst += src).
//
// Conventions shared by every file in shaders/: binding 0 is the Params uniform, storage buffers follow;
// 1-D grids are folded into x and y so more than 65535 workgroups fit (index = x + y * 65535 * WG).

override WG: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i < p.n) { out[i] = a[i] + b[i]; }
}

// Bindings: 1 = dst (out), 2 = src (a).
@compute @workgroup_size(WG)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i < p.n) { out[i] += a[i]; }
}
