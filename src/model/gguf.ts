/**
 * GGUF (llama.cpp's checkpoint format, https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), read far enough
 * to convert a model to a Hugging Face folder: the metadata key/values and the F32/F16 tensors (quantised types
 * are refused: converting them back would not give the trained weights).
 *
 * Layout (little-endian): "GGUF", version u32 (2 or 3), tensor count u64, metadata count u64; each metadata entry
 * a string key, a u32 value type, the value (arrays: element type u32, count u64, elements); each tensor info a
 * name, n_dims u32, dims u64[n_dims] (innermost first: ne[0] is the row length), ggml type u32, data offset u64;
 * then, aligned to general.alignment (default 32), the tensor data.
 */
import { UserError } from "../errors.ts";
import { toFloat32 } from "./safetensors.ts";

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensor {
  name: string;
  /** Row-major shape, outermost first (GGUF's dims reversed), as torch and safetensors write it. */
  shape: number[];
  data: Float32Array;
}

export interface GgufFile {
  metadata: Map<string, GgufValue>;
  tensors: Map<string, GgufTensor>;
}

const GGML_F32 = 0;
const GGML_F16 = 1;

export function parseGguf(buffer: Uint8Array, source = "gguf"): GgufFile {
  const view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  let offset = 0;
  const fail = (why: string): never => {
    throw new UserError(`${source}: not a readable GGUF file (${why})`, 422);
  };
  const need = (n: number) => {
    if (offset + n > buffer.length) fail("truncated");
  };
  const u32 = () => (need(4), (offset += 4), view.getUint32(offset - 4, true));
  const u64 = () => (need(8), (offset += 8), Number(view.getBigUint64(offset - 8, true)));
  const string = () => {
    const n = u64();
    need(n);
    offset += n;
    return new TextDecoder().decode(buffer.subarray(offset - n, offset));
  };
  const scalar: Record<number, () => GgufValue> = {
    0: () => (need(1), buffer[offset++]),
    1: () => (need(1), view.getInt8(offset++)),
    2: () => (need(2), (offset += 2), view.getUint16(offset - 2, true)),
    3: () => (need(2), (offset += 2), view.getInt16(offset - 2, true)),
    4: u32,
    5: () => (need(4), (offset += 4), view.getInt32(offset - 4, true)),
    6: () => (need(4), (offset += 4), view.getFloat32(offset - 4, true)),
    7: () => (need(1), buffer[offset++] !== 0),
    8: string,
    10: () => (need(8), (offset += 8), view.getBigUint64(offset - 8, true)),
    11: () => (need(8), (offset += 8), view.getBigInt64(offset - 8, true)),
    12: () => (need(8), (offset += 8), view.getFloat64(offset - 8, true)),
  };
  const value = (type: number): GgufValue => {
    if (type === 9) {
      const elementType = u32();
      const count = u64();
      return Array.from({ length: count }, () => value(elementType));
    }
    const read = scalar[type];
    if (!read) fail(`unknown metadata value type ${type}`);
    return read();
  };

  if (buffer.length < 4 || new TextDecoder().decode(buffer.subarray(0, 4)) !== "GGUF") fail("no GGUF magic");
  offset = 4;
  const version = u32();
  if (version !== 2 && version !== 3) fail(`version ${version} (2 and 3 are read)`);
  const tensorCount = u64();
  const metadataCount = u64();
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < metadataCount; i++) {
    const key = string();
    metadata.set(key, value(u32()));
  }
  const infos = Array.from({ length: tensorCount }, () => {
    const name = string();
    const dims = Array.from({ length: u32() }, u64);
    return { name, dims, type: u32(), offset: u64() };
  });
  const alignment = Number(metadata.get("general.alignment") ?? 32);
  const dataStart = Math.ceil(offset / alignment) * alignment;
  const tensors = new Map<string, GgufTensor>();
  for (const info of infos) {
    const count = info.dims.reduce((a, b) => a * b, 1);
    const begin = dataStart + info.offset;
    const shape = [...info.dims].reverse();
    if (info.type === GGML_F32) {
      if (begin + count * 4 > buffer.length) fail(`tensor ${info.name} lies outside the file`);
      tensors.set(info.name, { name: info.name, shape, data: new Float32Array(buffer.slice(begin, begin + count * 4).buffer) });
    } else if (info.type === GGML_F16) {
      if (begin + count * 2 > buffer.length) fail(`tensor ${info.name} lies outside the file`);
      const data = toFloat32({ dtype: "F16", shape, bytes: buffer.subarray(begin, begin + count * 2) });
      tensors.set(info.name, { name: info.name, shape, data });
    } else {
      fail(`tensor ${info.name} has ggml type ${info.type}; only F32 and F16 are converted (a quantised model is not the trained weights)`);
    }
  }
  return { metadata, tensors };
}

export async function readGgufFile(path: string): Promise<GgufFile> {
  const file = Bun.file(path);
  if (!(await file.exists())) throw new UserError(`${path}: file not found`, 404);
  return parseGguf(new Uint8Array(await file.arrayBuffer()), path);
}
