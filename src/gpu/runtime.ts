/**
 * The one place where a WebGPU implementation is plugged in. Browsers and Deno expose `navigator.gpu`; under Bun
 * and Node we use Dawn's node binding (npm `webgpu`). Everything else in the engine uses only the standard API.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

export const PROJECT_ROOT = resolve(import.meta.dir, "../..");
export const SOFTWARE_ICD = join(PROJECT_ROOT, ".vulkan", "lvp_icd.json");

// Bun collects the object returned by Dawn's create() while the device still lives, and then crashes inside
// Dawn's event processing; holding it here for the life of the process prevents that.
let dawnInstance: GPU | undefined;

export interface RuntimeOptions {
  /** Substring of the adapter name to ask Dawn for (Dawn flag `adapter=`). */
  adapterName?: string;
}

export async function navigatorGpu(options: RuntimeOptions = {}): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (dawnInstance) return dawnInstance;
  const { create, globals } = await import("webgpu");
  Object.assign(globalThis, globals); // GPUBufferUsage, GPUShaderStage, GPUMapMode …
  const flags: string[] = [];
  if (options.adapterName) flags.push(`adapter=${options.adapterName}`);
  dawnInstance = create(flags) as GPU;
  return dawnInstance;
}

const DRIVER_VARS = ["VK_ICD_FILENAMES", "VK_DRIVER_FILES", "VK_ADD_DRIVER_FILES"] as const;

/**
 * Environment additions that let the Vulkan loader see the project's software adapter (installed by
 * scripts/setup.sh into .vulkan/). The loader reads them when Dawn creates its instance, from the C environment,
 * which Bun's `process.env` does not write to — so a process needing them must be (re)started with them; `cli.ts`
 * does that. We *add* the driver (VK_ADD_DRIVER_FILES) so a real GPU, when present, is still found and preferred.
 * Returns null when nothing needs to change.
 */
export function softwareAdapterEnv(env: Record<string, string | undefined> = process.env): Record<string, string> | null {
  if (!existsSync(SOFTWARE_ICD)) return null;
  if (DRIVER_VARS.some((name) => env[name]?.includes(SOFTWARE_ICD))) return null;
  if (env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES) return null; // the user chose drivers explicitly
  const added = env.VK_ADD_DRIVER_FILES ? `${env.VK_ADD_DRIVER_FILES}:${SOFTWARE_ICD}` : SOFTWARE_ICD;
  return { VK_ADD_DRIVER_FILES: added, XDG_RUNTIME_DIR: env.XDG_RUNTIME_DIR || "/tmp" };
}

export const NO_ADAPTER_HELP =
  "no WebGPU adapter found. On a machine without a GPU driver, install the software adapter with " +
  "`npm run setup` (Debian/Ubuntu: libvulkan1 + Mesa 25 lavapipe into .vulkan/), then run through `bun src/cli.ts` " +
  "or `npm test`, which point the Vulkan loader at it (or set VK_ADD_DRIVER_FILES=.vulkan/lvp_icd.json yourself).";
