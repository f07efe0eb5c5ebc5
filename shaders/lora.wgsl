// LoRA's small elementwise kernels (src/model/lora.ts; the low-rank products themselves go through matmul.wgsl):
//   dropout        out (= or +=) inp·keep(i)/(1 − p), the mask a pure hash of (key, i), so the backward pass
//                  regenerates the forward's mask instead of storing it (src/model/lora.ts `dropoutKeep` is the
//                  same hash on the CPU, for the float64 reference)
//   addColumns     out[row·stride + offset + j] += scale·inp[row·width + j]: an adapter's update into its rows of a
//                  fused projection (q_proj's columns of q|k|v)
//   gatherColumns  out[row·width + j] = scale·inp[row·stride + offset + j]: that slice of the output gradient
// One thread per element, 1-D grid folded into x/y (see residual.wgsl).

override WG: u32 = 256u;

struct Params { n: u32, width: u32, stride: u32, offset: u32, scale: f32, key: u32, p: f32, accumulate: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;

// PCG hash (Jarzynski & Olano 2020): a well-mixed u32 from a u32.
fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

@compute @workgroup_size(WG)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n) { return; }
  let u = f32(pcg(i ^ p.key) >> 8u) * (1.0 / 16777216.0);
  let value = select(0.0, inp[i] * p.scale, u >= p.p);
  if (p.accumulate != 0u) { out[i] += value; } else { out[i] = value; }
}

@compute @workgroup_size(WG)
fn addColumns(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n) { return; }
  let row = i / p.width;
  let j = i - row * p.width;
  out[row * p.stride + p.offset + j] += p.scale * inp[i];
}

@compute @workgroup_size(WG)
fn gatherColumns(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n) { return; }
  let row = i / p.width;
  let j = i - row * p.width;
  out[i] = p.scale * inp[row * p.stride + p.offset + j];
}
