import { afterAll, expect, test } from "bun:test";
import { acquireGpu, describeGpu } from "../../src/gpu/device.ts";
import { bind, createStorage, readFloat32, upload } from "../../src/gpu/buffers.ts";
import { grid1d } from "../../src/gpu/workgroups.ts";
import { Recorder } from "../../src/gpu/recorder.ts";
import { ShaderError, ShaderLibrary } from "../../src/gpu/shaders.ts";
import { runCli } from "../helpers/cli.ts";

const gpu = await acquireGpu();
afterAll(() => gpu.destroy());

test("an adapter is found and described", () => {
  expect(describeGpu(gpu).length).toBeGreaterThan(3);
  expect(gpu.device.limits.maxStorageBufferBindingSize).toBe(gpu.adapter.maxStorageBufferBindingSize);
});

test("a dispatch through the recorder computes and reads back, with params and bind groups reused", async () => {
  const shaders = new ShaderLibrary(gpu.device);
  const pipeline = await shaders.pipeline("residual", "forward", { WG: 64 });
  const n = 1000;
  const a = Float32Array.from({ length: n }, (_, i) => i);
  const b = Float32Array.from({ length: n }, (_, i) => 2 * i + 0.5);
  const [ba, bb, out] = ["a", "b", "out"].map((l) => createStorage(gpu, l, n * 4));
  upload(gpu, bind(ba), a);
  upload(gpu, bind(bb), b);
  const recorder = new Recorder(gpu, 2); // tiny arena: forces growth mid-record
  for (let rep = 0; rep < 3; rep++) recorder.dispatch(pipeline, [n - 1], [bind(out), bind(ba), bind(bb)], grid1d(n, 64));
  recorder.submit();
  const result = await readFloat32(gpu, bind(out, 0, n * 4));
  for (let i = 0; i < n - 1; i++) expect(result[i]).toBe(3 * i + 0.5);
  expect(result[n - 1]).toBe(0); // params.n = n-1: the last element is untouched
});

test("a WGSL compile error names the shader file and line", async () => {
  const shaders = new ShaderLibrary(gpu.device);
  const source = "// line 1\nfn f() -> u32 {\n  return undefined_name;\n}\n";
  const failure = shaders.compileSource("broken", source).catch((e) => e);
  expect(await failure).toBeInstanceOf(ShaderError);
  expect(String(await failure)).toMatch(/shaders\/broken\.wgsl:3:\d+: .*undefined_name/);
});

test("with no usable Vulkan driver the CLI says how to get the software adapter, never a silent null adapter", () => {
  const child = runCli(["doctor"], { VK_ICD_FILENAMES: "/nonexistent/icd.json", VK_ADD_DRIVER_FILES: "" });
  expect(child.code).toBe(1);
  const lastLine = child.stderr.trim().split("\n").at(-1);
  expect(lastLine).toStartWith("cot-distill: no WebGPU adapter found.");
  expect(lastLine).toContain("npm run setup");
});

test("an adapter name that matches nothing is refused, naming the adapters there are", () => {
  const child = runCli(["doctor", "--adapter", "no-such-gpu-xyz"]);
  expect(child.code).toBe(1);
  expect(child.stderr).toMatch(/cot-distill: no adapter matching "no-such-gpu-xyz" \(.*Available adapters/);
});
