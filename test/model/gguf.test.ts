import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ggufLlamaToHF, permuteRotary } from "../../src/model/convert-gguf.ts";
import { parseGguf, readGgufFile } from "../../src/model/gguf.ts";
import { PROJECT_ROOT } from "../helpers/cli.ts";

/** A GGUF v3 file built byte by byte: metadata (string and u32 values) and one tensor of the given ggml type. */
function handMade(metadata: Record<string, string | number>, tensor: { name: string; dims: number[]; type: number; data: Uint8Array }): Uint8Array {
  const parts: number[] = [];
  const u32 = (n: number) => parts.push(...new Uint8Array(new Uint32Array([n]).buffer));
  const u64 = (n: number) => parts.push(...new Uint8Array(new BigUint64Array([BigInt(n)]).buffer));
  const str = (s: string) => {
    const bytes = new TextEncoder().encode(s);
    u64(bytes.length);
    parts.push(...bytes);
  };
  parts.push(...new TextEncoder().encode("GGUF"));
  u32(3);
  u64(1);
  u64(Object.keys(metadata).length);
  for (const [key, value] of Object.entries(metadata)) {
    str(key);
    if (typeof value === "string") (u32(8), str(value));
    else (u32(4), u32(value));
  }
  str(tensor.name);
  u32(tensor.dims.length);
  tensor.dims.forEach(u64);
  u32(tensor.type);
  u64(0);
  while (parts.length % 32 !== 0) parts.push(0);
  return new Uint8Array([...parts, ...tensor.data]);
}

describe("GGUF", () => {
  test("metadata and an F32 tensor read back; dims are reversed to row-major shapes", () => {
    const data = new Float32Array([1, 2, 3, 4, 5, 6]);
    const file = parseGguf(handMade({ "general.architecture": "llama", "llama.block_count": 5 }, { name: "w", dims: [3, 2], type: 0, data: new Uint8Array(data.buffer) }));
    expect(file.metadata.get("general.architecture")).toBe("llama");
    expect(file.metadata.get("llama.block_count")).toBe(5);
    expect(file.tensors.get("w")!.shape).toEqual([2, 3]);
    expect([...file.tensors.get("w")!.data]).toEqual([1, 2, 3, 4, 5, 6]);
  });

  test("quantised tensors and other files are refused with one line", () => {
    const q4 = handMade({}, { name: "blk.0.attn_q.weight", dims: [32], type: 2, data: new Uint8Array(18) });
    expect(() => parseGguf(q4, "m.gguf")).toThrow("m.gguf: not a readable GGUF file (tensor blk.0.attn_q.weight has ggml type 2; only F32 and F16 are converted (a quantised model is not the trained weights))");
    expect(() => parseGguf(new TextEncoder().encode("PK\x03\x04 not gguf"), "x.bin")).toThrow("x.bin: not a readable GGUF file (no GGUF magic)");
    const noLlama = parseGguf(handMade({ "general.architecture": "falcon" }, { name: "w", dims: [1], type: 0, data: new Uint8Array(4) }));
    expect(() => ggufLlamaToHF(noLlama)).toThrow('GGUF: general.architecture "falcon" is not converted (only llama)');
  });

  test("the rotary permutation puts each head's even rows first, then its odd rows (HF's permute)", () => {
    // 2 heads of 4 rows, 1 column: rows 0..7 → head 0: 0 2 1 3, head 1: 4 6 5 7
    expect([...permuteRotary(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 2, 8, 1)]).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  });

  test("the repo's stories260k GGUF: its SentencePiece vocabulary and every Llama tensor", async () => {
    const file = await readGgufFile(join(PROJECT_ROOT, "models/stories260k/stories260K-ctx512.gguf"));
    expect((file.metadata.get("tokenizer.ggml.tokens") as string[]).length).toBe(512);
    expect(file.tensors.size).toBe(3 + 5 * 9);
    expect(file.tensors.get("blk.0.attn_k.weight")!.shape).toEqual([32, 64]);
  });
});
