import { describe, expect, test } from "bun:test";
import { parseSafetensors, serializeSafetensors, toFloat32, toFloat64 } from "../../src/model/safetensors.ts";
import { UserError } from "../../src/errors.ts";

/** A file built by hand, byte by byte, as the format spec describes it. */
function handMade(header: object, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe("safetensors", () => {
  test("F32 and F64 round trip bit-exact, with metadata and an aligned header", () => {
    const a = new Float32Array([1.5, -2, Math.PI, 1e-30]);
    const b = new Float64Array([Math.E, -0, 1e300]);
    const bytes = serializeSafetensors([{ name: "a", shape: [2, 2], data: a }, { name: "b", shape: [3], data: b }], { format: "pt" });
    expect(Number(new DataView(bytes.buffer).getBigUint64(0, true)) % 8).toBe(0);
    const file = parseSafetensors(bytes);
    expect(file.metadata).toEqual({ format: "pt" });
    expect(file.tensors.get("a")!.shape).toEqual([2, 2]);
    expect(toFloat32(file.tensors.get("a")!)).toEqual(a);
    expect(toFloat64(file.tensors.get("b")!)).toEqual(b);
  });

  test("F16 and BF16 are widened to f32", () => {
    // F16: 1.0 = 0x3c00, -2.5 = 0xc100, 2^-24 (smallest subnormal) = 0x0001; BF16: 1.0 = 0x3f80, -3.0 = 0xc040
    const f16 = new Uint16Array([0x3c00, 0xc100, 0x0001]);
    const bf16 = new Uint16Array([0x3f80, 0xc040]);
    const data = new Uint8Array([...new Uint8Array(f16.buffer), ...new Uint8Array(bf16.buffer)]);
    const file = parseSafetensors(handMade({ h: { dtype: "F16", shape: [3], data_offsets: [0, 6] }, g: { dtype: "BF16", shape: [2], data_offsets: [6, 10] } }, data));
    expect([...toFloat32(file.tensors.get("h")!)]).toEqual([1, -2.5, 2 ** -24]);
    expect([...toFloat32(file.tensors.get("g")!)]).toEqual([1, -3]);
  });

  test("malformed files are UserErrors naming the file and the problem", () => {
    expect(() => parseSafetensors(new Uint8Array(3), "x.safetensors")).toThrow(UserError);
    expect(() => parseSafetensors(handMade({ t: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), "x.safetensors")).toThrow(
      "x.safetensors: not a valid safetensors file (tensor t: 8 bytes for shape [3] F32)",
    );
    expect(() => parseSafetensors(handMade({ t: { dtype: "I8", shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)))).toThrow(/unsupported dtype I8/);
    expect(() => parseSafetensors(handMade({ t: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)))).toThrow(/outside the file/);
  });
});
