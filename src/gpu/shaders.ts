/**
 * Loads the WGSL files in shaders/, compiles them once per device, and builds compute pipelines specialised with
 * WGSL `override` constants (tile sizes, workgroup sizes). Compilation errors name the file and line.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT } from "./runtime.ts";

export const SHADER_DIR = join(PROJECT_ROOT, "shaders");

export type Constants = Record<string, number>;

export class ShaderError extends Error {
  override name = "ShaderError";
}

export function readShaderSource(file: string): string {
  return readFileSync(join(SHADER_DIR, file.endsWith(".wgsl") ? file : `${file}.wgsl`), "utf8");
}

/** Where WGSL text comes from: files under shaders/ here; a browser or Deno host can pass a fetch-based reader. */
export type ShaderSourceReader = (file: string) => string | Promise<string>;

export class ShaderLibrary {
  private readonly modules = new Map<string, Promise<GPUShaderModule>>();
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();

  constructor(
    private readonly device: GPUDevice,
    private readonly readSource: ShaderSourceReader = readShaderSource,
  ) {}

  module(file: string): Promise<GPUShaderModule> {
    let pending = this.modules.get(file);
    if (!pending) {
      pending = this.compile(file);
      this.modules.set(file, pending);
    }
    return pending;
  }

  private async compile(file: string): Promise<GPUShaderModule> {
    return this.compileSource(file, await this.readSource(file));
  }

  /** Compiles WGSL text; `name` is the file name (without .wgsl) that error messages point at. */
  async compileSource(name: string, code: string): Promise<GPUShaderModule> {
    const file = name;
    // Scoped so a broken shader becomes this rejection, not a stray uncaptured error on the device.
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ label: file, code });
    await this.device.popErrorScope();
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length) {
      const where = errors.map((m) => `shaders/${file}.wgsl:${m.lineNum}:${m.linePos}: ${m.message}`);
      throw new ShaderError(where.join("\n"));
    }
    return module;
  }

  /** A compute pipeline for `entryPoint` of `file`, cached per set of override constants. */
  pipeline(file: string, entryPoint: string, constants: Constants = {}): Promise<GPUComputePipeline> {
    const key = `${file}:${entryPoint}:${JSON.stringify(constants)}`;
    let pending = this.pipelines.get(key);
    if (!pending) {
      pending = this.module(file).then(async (module) => {
        try {
          return await this.device.createComputePipelineAsync({
            label: key,
            layout: "auto",
            compute: { module, entryPoint, constants },
          });
        } catch (err) {
          throw new ShaderError(`shaders/${file}.wgsl, entry point ${entryPoint}: ${(err as Error).message}`);
        }
      });
      this.pipelines.set(key, pending);
    }
    return pending;
  }
}
