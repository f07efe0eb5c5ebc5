/**
 * Shared scaffolding for the kernel tests: one device per test process, seeded random f32-exact inputs, upload and
 * read-back of tensors, and the error measure every kernel test asserts with.
 *
 *   import { context, random, tensor, zeros, run, read, expectClose } from "./harness.ts";
 *   const a = random(M * K, seed);                      // Float64Array whose values are exactly representable in f32
 *   const out = zeros(M * N);                           // Binding of a fresh zero-filled f32 buffer
 *   write(out, values);                                 // overwrite a tensor's contents
 *   run((r) => kernels.matmul(r, { out, a: tensor(a), … }));   // record + submit
 *   expectClose(await read(out), ref.matmul(a, …), 1e-4);     // max|gpu−ref| / max|ref| below the tolerance
 *
 * Inputs are rounded to f32 before the float64 reference sees them, so the measured error is the kernel's
 * arithmetic error alone, not input rounding.
 */
import { expect } from "bun:test";
import { acquireGpu, type Gpu } from "../../../src/gpu/device.ts";
import { bind, createStorage, readBytes, upload } from "../../../src/gpu/buffers.ts";
import { Recorder, type Binding } from "../../../src/gpu/recorder.ts";
import { ShaderLibrary } from "../../../src/gpu/shaders.ts";
import type { KernelContext } from "../../../src/gpu/kernels/index.ts";

// One device for every kernel test file in this process (bun runs test files in one process).
const shared = globalThis as { __cotKernelTestContext?: Promise<KernelContext> };
shared.__cotKernelTestContext ??= acquireGpu().then((gpu) => ({ gpu, shaders: new ShaderLibrary(gpu.device) }));

export const context: KernelContext = await shared.__cotKernelTestContext;
export const gpu: Gpu = context.gpu;

/** Deterministic pseudo-random numbers (mulberry32), so a failing case can be replayed from its seed. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

/** The values rounded to f32 precision, as float64. */
export function f32(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(Float32Array.from(values));
}

/** n f32-exact values uniform in [lo, hi), from `seed` (or an Rng to continue a sequence). */
export function random(n: number, seed: number | Rng, lo = -1, hi = 1): Float64Array {
  const rng = typeof seed === "number" ? new Rng(seed) : seed;
  return f32(Array.from({ length: n }, () => rng.uniform(lo, hi)));
}

/** n integers in [0, max). */
export function randomInts(n: number, max: number, seed: number | Rng): Uint32Array {
  const rng = typeof seed === "number" ? new Rng(seed) : seed;
  return Uint32Array.from({ length: n }, () => rng.int(max));
}

const created: GPUBuffer[] = [];

/** A storage buffer holding `data` (float arrays become f32, Uint32Array stays u32), bound exactly to its length. */
export function tensor(data: Float64Array | Float32Array | Uint32Array | readonly number[], label = "test tensor"): Binding {
  const words = data instanceof Uint32Array || data instanceof Float32Array ? data : Float32Array.from(data);
  const buffer = createStorage(gpu, label, words.byteLength);
  created.push(buffer);
  const binding = bind(buffer, 0, Math.max(4, words.byteLength));
  write(binding, words);
  return binding;
}

/** Overwrites a tensor's contents (float arrays as f32, Uint32Array as u32), e.g. fresh gradients for a next step. */
export function write(target: Binding, data: Float64Array | Float32Array | Uint32Array): void {
  upload(gpu, target, data instanceof Uint32Array || data instanceof Float32Array ? data : Float32Array.from(data));
}

/** A zero-filled f32 tensor of n elements. */
export function zeros(n: number, label = "test zeros"): Binding {
  return tensor(new Float32Array(n), label);
}

/** Records with a fresh Recorder and submits (work runs in submission order; `read` waits for it). */
export function run(record: (r: Recorder) => void): Recorder {
  const recorder = new Recorder(gpu);
  record(recorder);
  recorder.submit();
  return recorder;
}

/** A tensor's f32 contents, widened to float64. */
export async function read(source: Binding): Promise<Float64Array> {
  return Float64Array.from(new Float32Array(await readBytes(gpu, source)));
}

/** Raw f32 contents (for bit-exact comparisons such as determinism checks). */
export async function readRaw(source: Binding): Promise<Float32Array> {
  return new Float32Array(await readBytes(gpu, source));
}

export { expectClose, relativeError } from "../../helpers/numeric.ts";

/** Destroys the buffers made by `tensor`/`zeros` so far (call from afterAll in big test files). */
export function freeTensors(): void {
  for (const buffer of created.splice(0)) buffer.destroy();
}
