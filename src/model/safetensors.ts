/**
 * The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}, then the raw
 * little-endian tensor bytes. Reads F32, F16, BF16 and F64 (converting on request); writes F32 and F64 as given, and
 * F16 or BF16 narrowed from float32 with round-to-nearest-even (torch's `.to(dtype)`), so a fine-tuned student can
 * be saved at the size it was downloaded in. Malformed files raise a UserError that names the file.
 */
import { UserError } from "../errors.ts";

export type Dtype = "F64" | "F32" | "F16" | "BF16";

const DTYPE_BYTES: Record<Dtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

export interface SafetensorsEntry {
  dtype: Dtype;
  shape: number[];
  /** The tensor's raw bytes (a view into the file). */
  bytes: Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array | Float64Array;
  /** Stored dtype: F16/BF16 narrow a Float32Array; default F32 for Float32Array, F64 for Float64Array. */
  dtype?: Dtype;
}

export const DTYPE_NAMES = ["F32", "F16", "BF16"] as const;

/** torch's names (config.json `torch_dtype`, `--save-dtype`) for the dtypes a checkpoint is written in. */
const TORCH_NAMES: Record<string, Dtype> = { float32: "F32", float16: "F16", bfloat16: "BF16", f32: "F32", fp32: "F32", f16: "F16", fp16: "F16", bf16: "BF16" };

/** "bf16" / "bfloat16" / "BF16" → "BF16"; undefined for a name that is not one of F32, F16, BF16. */
export function parseDtype(name: string): Dtype | undefined {
  const upper = name.toUpperCase();
  if ((DTYPE_NAMES as readonly string[]).includes(upper)) return upper as Dtype;
  return TORCH_NAMES[name.toLowerCase()];
}

/** The torch_dtype config.json names a checkpoint of this dtype with. */
export function torchDtypeName(dtype: Dtype): string {
  return { F64: "float64", F32: "float32", F16: "float16", BF16: "bfloat16" }[dtype];
}

export function parseSafetensors(buffer: Uint8Array, source = "safetensors"): SafetensorsFile {
  const fail = (why: string): never => {
    throw new UserError(`${source}: not a valid safetensors file (${why})`, 422);
  };
  if (buffer.length < 8) fail("shorter than its 8-byte header length");
  const headerLength = Number(new DataView(buffer.buffer, buffer.byteOffset, 8).getBigUint64(0, true));
  if (headerLength > buffer.length - 8) fail(`header length ${headerLength} exceeds the file`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(buffer.subarray(8, 8 + headerLength)));
  } catch {
    return fail("header is not JSON");
  }
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = (value ?? {}) as Record<string, string>;
      continue;
    }
    const info = value as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    if (!info || typeof info.dtype !== "string" || !Array.isArray(info.shape) || !Array.isArray(info.data_offsets)) {
      fail(`tensor ${name} lacks dtype, shape or data_offsets`);
    }
    if (!(info.dtype! in DTYPE_BYTES)) fail(`tensor ${name} has unsupported dtype ${info.dtype} (F32, F16, BF16, F64 are read)`);
    const dtype = info.dtype as Dtype;
    const [begin, end] = info.data_offsets!;
    const expectedBytes = info.shape!.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== expectedBytes) fail(`tensor ${name}: ${end - begin} bytes for shape [${info.shape}] ${dtype}`);
    if (begin < 0 || dataStart + end > buffer.length) fail(`tensor ${name} lies outside the file`);
    tensors.set(name, { dtype, shape: info.shape!, bytes: buffer.subarray(dataStart + begin, dataStart + end) });
  }
  return { tensors, metadata };
}

/** The tensor as float32 (F16/BF16 widened exactly, F64 rounded). */
export function toFloat32(entry: SafetensorsEntry): Float32Array {
  // copy first: the bytes may sit at an offset not aligned for a typed array view
  const aligned = entry.bytes.slice().buffer;
  switch (entry.dtype) {
    case "F32":
      return new Float32Array(aligned);
    case "F64":
      return Float32Array.from(new Float64Array(aligned));
    case "F16":
      return Float32Array.from(new Uint16Array(aligned), halfToFloat);
    case "BF16": {
      // bfloat16 is the top half of a float32
      const bits = new Uint16Array(aligned);
      const wide = new Uint32Array(bits.length);
      for (let i = 0; i < bits.length; i++) wide[i] = bits[i] << 16;
      return new Float32Array(wide.buffer);
    }
  }
}

/** The tensor as float64 (exact for every supported dtype). */
export function toFloat64(entry: SafetensorsEntry): Float64Array {
  return entry.dtype === "F64" ? new Float64Array(entry.bytes.slice().buffer) : Float64Array.from(toFloat32(entry));
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // subnormal
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** float32 → bfloat16 bits, round to nearest even (NaN stays a quiet NaN), as torch rounds. */
export function floatToBfloat16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = (x >>> 16) | 0x40;
    else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
  return out;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** One float32 → IEEE half bits, round to nearest even, overflow to ±Inf, gradual underflow. */
function floatToHalf(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    // subnormal: shift the full significand (implicit 1 included) right, rounding to nearest even
    const significand = mantissa | 0x800000;
    const shift = 14 - e;
    const half = significand >>> shift;
    const rest = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    return sign | (half + (rest > halfway || (rest === halfway && half & 1) ? 1 : 0));
  }
  const half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // a carry out of the mantissa correctly bumps the exponent (up to Inf)
  return sign | (half + (rest > 0x1000 || (rest === 0x1000 && half & 1) ? 1 : 0));
}

export function floatToFloat16(values: Float32Array): Uint16Array {
  return Uint16Array.from(values, floatToHalf);
}

/** The bytes a tensor is stored as in its dtype. */
function encodeTensor(t: TensorToWrite): { dtype: Dtype; bytes: Uint8Array } {
  const dtype: Dtype = t.dtype ?? (t.data instanceof Float64Array ? "F64" : "F32");
  const asBytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (dtype === "F64") return { dtype, bytes: asBytes(t.data instanceof Float64Array ? t.data : Float64Array.from(t.data)) };
  const f32 = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
  if (dtype === "F32") return { dtype, bytes: asBytes(f32) };
  return { dtype, bytes: asBytes(dtype === "BF16" ? floatToBfloat16(f32) : floatToFloat16(f32)) };
}

/** Bytes `t` takes in the file. */
export function storedBytes(t: TensorToWrite): number {
  const dtype: Dtype = t.dtype ?? (t.data instanceof Float64Array ? "F64" : "F32");
  return t.data.length * DTYPE_BYTES[dtype];
}

/** Serialises tensors (each in its dtype; see TensorToWrite) in the given order. */
export function serializeSafetensors(tensors: TensorToWrite[], metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const encoded = tensors.map((t) => {
    const expected = t.shape.reduce((a, b) => a * b, 1);
    if (expected !== t.data.length) throw new Error(`tensor ${t.name}: ${t.data.length} values for shape [${t.shape}]`);
    const { dtype, bytes } = encodeTensor(t);
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    return bytes;
  });
  // the reference implementation pads the header with spaces to a multiple of 8 so the data is aligned
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerBytes = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  headerBytes.set(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.length;
  for (const bytes of encoded) {
    out.set(bytes, position);
    position += bytes.length;
  }
  return out;
}

export async function readSafetensorsFile(path: string): Promise<SafetensorsFile> {
  const file = Bun.file(path);
  if (!(await file.exists())) throw new UserError(`${path}: file not found`, 404);
  return parseSafetensors(new Uint8Array(await file.arrayBuffer()), path);
}

export async function writeSafetensorsFile(path: string, tensors: TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  await Bun.write(path, serializeSafetensors(tensors, metadata));
}
