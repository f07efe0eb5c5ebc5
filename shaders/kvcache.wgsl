// Incremental decoding with a key/value cache. A decoding pass feeds N tokens, each belonging to one cache row
// (a sequence being generated) at one position of it: a prompt being prefilled contributes all its tokens, a row
// that is generating contributes its newest one, and rows of both kinds share a pass. Per token n: rows[n] is its
// cache row, positions[n] its position in that row.
//
// The cache of a layer is kCache, vCache [maxRows, maxLength, KVH·hd]: keys after q/k norm and rotary, values as
// projected. `append` writes a pass's keys and values into it; `attend` then lets every token's query heads attend
// to the keys of its own row at positions 0 … positions[n] (causal, and blind to whatever a longer earlier
// sequence left beyond that in a reused row), with grouped key/value heads (query head h reads kv head h / group),
// the family's score scale and Gemma 2's soft-capping cap·tanh(s/cap).
//
// attend is one workgroup per (token, query head), walking the keys WG at a time with an online softmax: each
// thread scores one key of the tile, the tile's max is reduced in workgroup memory, the running sum and the
// thread's output columns (d = lid, lid + WG, …) are rescaled to the new max and the tile's probabilities summed
// into them in key order. No T-sized scratch, a fixed summation order (deterministic), head sizes up to
// MAX_COLUMNS·WG.
//
// addPositions and gather serve the pass's ends: learned position embeddings at per-token positions (wpe[pos]),
// and the last token of each row picked out for the head, so only B rows of logits are computed.

override WG: u32 = 64u;
const MAX_COLUMNS: u32 = 4u;
const LOWEST: f32 = -3.4028234e38;

struct Params {
  n: u32,          // tokens in the pass (append, attend, addPositions); output rows (gather)
  width: u32,      // append: KVH·hd; addPositions, gather: floats per row
  maxLength: u32,  // positions per cache row
  NH: u32,
  hd: u32,
  group: u32,      // query heads per key/value head
  inStride: u32,   // append: k view; attend: q view (row stride and first column, in floats)
  inOffset: u32,
  vStride: u32,    // append: v view
  vOffset: u32,
  scale: f32,
  softcap: f32,    // 0: none
}

@group(0) @binding(0) var<uniform> p: Params;

// ---- append: kCache[rows[n], positions[n], :] = k[n], vCache[…] = v[n] ----

@group(0) @binding(1) var<storage, read_write> kCacheOut: array<f32>;
@group(0) @binding(2) var<storage, read_write> vCacheOut: array<f32>;
@group(0) @binding(3) var<storage, read> kIn: array<f32>;
@group(0) @binding(4) var<storage, read> vIn: array<f32>;
@group(0) @binding(5) var<storage, read> appendRows: array<u32>;
@group(0) @binding(6) var<storage, read> appendPositions: array<u32>;

@compute @workgroup_size(WG)
fn append(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n * p.width) { return; }
  let n = i / p.width;
  let e = i % p.width;
  let dst = (appendRows[n] * p.maxLength + appendPositions[n]) * p.width + e;
  kCacheOut[dst] = kIn[n * p.inStride + p.inOffset + e];
  vCacheOut[dst] = vIn[n * p.vStride + p.vOffset + e];
}

// ---- attend: out[n, h·hd + d] = Σ_{j ≤ positions[n]} softmax_j(cap(scale·q·k_j)) · v_j[d] ----

@group(0) @binding(1) var<storage, read_write> attOut: array<f32>;
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> kCache: array<f32>;
@group(0) @binding(4) var<storage, read> vCache: array<f32>;
@group(0) @binding(5) var<storage, read> rows: array<u32>;
@group(0) @binding(6) var<storage, read> positions: array<u32>;

var<workgroup> query: array<f32, MAX_COLUMNS * WG>;
var<workgroup> tile: array<f32, WG>;
var<workgroup> last: u32;

// grid: N·NH workgroups, folded as x + y·65535.
@compute @workgroup_size(WG)
fn attend(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let item = wg.x + wg.y * 65535u;
  if (item >= p.n * p.NH) { return; }
  let n = item / p.NH;
  let h = item % p.NH;
  let kvWidth = p.NH / p.group * p.hd;
  let row = rows[n];
  for (var d = lid; d < p.hd; d += WG) { query[d] = q[n * p.inStride + p.inOffset + h * p.hd + d]; }
  if (lid == 0u) { last = positions[n]; }
  // the key loop below holds barriers: its bound must be uniform across the workgroup
  let end = workgroupUniformLoad(&last) + 1u;
  let head = (h / p.group) * p.hd;
  var m = LOWEST;
  var sum = 0.0;
  var acc: array<f32, MAX_COLUMNS>;
  for (var j0 = 0u; j0 < end; j0 += WG) {
    let j = j0 + lid;
    var s = LOWEST;
    if (j < end) {
      let key = (row * p.maxLength + j) * kvWidth + head;
      var dot = 0.0;
      for (var d = 0u; d < p.hd; d++) { dot += query[d] * kCache[key + d]; }
      s = dot * p.scale;
      if (p.softcap > 0.0) { s = p.softcap * tanh(s / p.softcap); }
    }
    tile[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
      if (lid < stride) { tile[lid] = max(tile[lid], tile[lid + stride]); }
      workgroupBarrier();
    }
    let next = max(m, tile[0]);
    workgroupBarrier();
    tile[lid] = select(0.0, exp(s - next), j < end);
    workgroupBarrier();
    let correction = exp(m - next); // 0 on the first tile (m = LOWEST)
    sum *= correction;
    for (var c = 0u; c < MAX_COLUMNS; c++) { acc[c] *= correction; }
    let count = min(WG, end - j0);
    for (var t = 0u; t < count; t++) {
      let weight = tile[t];
      sum += weight;
      let value = (row * p.maxLength + j0 + t) * kvWidth + head;
      for (var c = 0u; c < MAX_COLUMNS; c++) {
        let d = lid + c * WG;
        if (d < p.hd) { acc[c] += weight * vCache[value + d]; }
      }
    }
    m = next;
    workgroupBarrier(); // the next tile overwrites `tile`
  }
  for (var c = 0u; c < MAX_COLUMNS; c++) {
    let d = lid + c * WG;
    if (d < p.hd) { attOut[(n * p.NH + h) * p.hd + d] = acc[c] / sum; }
  }
}

// ---- addPositions: x[n, :] += wpe[positions[n], :] ----

@group(0) @binding(1) var<storage, read_write> embedded: array<f32>;
@group(0) @binding(2) var<storage, read> wpe: array<f32>;
@group(0) @binding(3) var<storage, read> tokenPositions: array<u32>;

@compute @workgroup_size(WG)
fn addPositions(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n * p.width) { return; }
  embedded[i] += wpe[tokenPositions[i / p.width] * p.width + i % p.width];
}

// ---- gather: out[r, :] = x[index[r], :] ----

@group(0) @binding(1) var<storage, read_write> gathered: array<f32>;
@group(0) @binding(2) var<storage, read> source: array<f32>;
@group(0) @binding(3) var<storage, read> index: array<u32>;

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * 65535u * WG;
  if (i >= p.n * p.width) { return; }
  gathered[i] = source[index[i / p.width] * p.width + i % p.width];
}
