// Gated MLP activations: out = act(gate) · up, with inp[N, 2I] the fused gate|up projection (gate in columns
// 0 … I−1, up in I … 2I−1 of each row) and out[N, I].
//   ACT 0, SwiGLU (Llama, Qwen): act = silu(x) = x·σ(x),            act' = σ(x)·(1 + x·(1 − σ(x)))
//   ACT 1, GeGLU (Gemma):        act = GELU tanh approximation,     act' as in gelu.wgsl
// backward: dinp[n, i] = dout·up·act'(gate), dinp[n, I + i] = dout·act(gate) (overwrites).
// One thread per output element, 1-D grid folded into x/y (see residual.wgsl).

override WG: u32 = 256u;
override ACT: u32 = 0u;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const CUBIC: f32 = 0.044715;
const SATURATED: f32 = 10.0; // see gelu.wgsl: past |x| = 10 GELU is x or 0 to f32 precision

struct Params { n: u32, I: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> inp: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); } // exp(−x) = inf gives 0, not NaN

// act(x) and act'(x)
fn activation(x: f32) -> vec2<f32> {
  if (ACT == 0u) {
    let s = sigmoid(x);
    return vec2(x * s, s * (1.0 + x * (1.0 - s)));
  }
  let xc = clamp(x, -SATURATED, SATURATED);
  let t = tanh(SQRT_2_OVER_PI * (xc + CUBIC * xc * xc * xc));
  let local = 0.5 * (1.0 + t) + 0.5 * xc * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * xc * xc);
  return vec2(0.5 * x * (1.0 + t), local);
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n) { return; }
  let row = i / p.I;
  let col = i % p.I;
  let gate = inp[row * 2u * p.I + col];
  let up = inp[row * 2u * p.I + p.I + col];
  out[i] = activation(gate).x * up;
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n) { return; }
  let row = i / p.I;
  let col = i % p.I;
  let at = row * 2u * p.I + col;
  let a = activation(inp[at]);
  out[at] = dout[i] * inp[at + p.I] * a.y;
  out[at + p.I] = dout[i] * a.x;
}
