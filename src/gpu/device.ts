/**
 * Adapter and device acquisition: high-performance preference, an adapter chosen by name, the limits the model
 * needs requested explicitly, and WebGPU errors turned into exceptions.
 */
import { UserError } from "../errors.ts";
import { NO_ADAPTER_HELP, navigatorGpu } from "./runtime.ts";

export interface DeviceOptions {
  /** Substring (case-insensitive) of the adapter's name/vendor/description; also read from COT_DISTILL_ADAPTER. */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation such as lavapipe/llvmpipe or SwiftShader. */
  isSoftware: boolean;
  features: string[];
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

export interface Gpu {
  device: GPUDevice;
  adapter: AdapterSummary;
  /** Throws the first uncaptured WebGPU error seen since the last call (validation, out-of-memory, device lost). */
  throwIfFailed(): void;
  destroy(): void;
}

const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|software|cpu/i;

function describeAdapter(adapter: GPUAdapter): AdapterSummary {
  const info = adapter.info;
  const name = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    isSoftware: SOFTWARE_NAMES.test(name) || (info as { type?: string }).type === "CPU",
    features: [...adapter.features].sort(),
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    maxBufferSize: adapter.limits.maxBufferSize,
  };
}

function adapterName(a: AdapterSummary): string {
  return [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(" / ");
}

/** The limits the trainer relies on, raised to what the adapter allows (GPT-2 124M's wte alone is 154 MB). */
function requiredLimits(adapter: GPUAdapter): Record<string, number> {
  const l = adapter.limits;
  return {
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxStorageBuffersPerShaderStage: Math.min(l.maxStorageBuffersPerShaderStage, 10),
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
  };
}

export async function acquireGpu(options: DeviceOptions = {}): Promise<Gpu> {
  const wanted = options.adapter ?? process.env.COT_DISTILL_ADAPTER ?? undefined;
  const gpu = await navigatorGpu({ adapterName: wanted });
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? "high-performance" });
  } catch (err) {
    // Dawn rejects an `adapter=` flag that matches nothing, listing the adapters it has.
    const found = (err as Error).message.replace(/\s+/g, " ").trim();
    throw new UserError(wanted ? `no adapter matching "${wanted}" (${found})` : `${NO_ADAPTER_HELP} (${found})`);
  }
  if (!adapter) throw new UserError(NO_ADAPTER_HELP);
  const summary = describeAdapter(adapter);
  if (wanted && !adapterName(summary).toLowerCase().includes(wanted.toLowerCase())) {
    throw new UserError(`no adapter matching "${wanted}"; the adapter found is: ${adapterName(summary)}`);
  }
  const features = (["subgroups", "timestamp-query"] as GPUFeatureName[]).filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    label: "cot-distill",
    requiredLimits: requiredLimits(adapter),
    requiredFeatures: features,
  });
  let failure: Error | undefined;
  device.addEventListener("uncapturederror", (event) => {
    const error = (event as GPUUncapturedErrorEvent).error;
    failure ??= new Error(`WebGPU error: ${error.message}`);
  });
  let destroyed = false;
  device.lost.then((info) => {
    if (!destroyed) failure ??= new Error(`WebGPU device lost (${info.reason}): ${info.message}`);
  });
  return {
    device,
    adapter: summary,
    throwIfFailed() {
      if (failure) {
        const error = failure;
        failure = undefined;
        throw error;
      }
    },
    destroy() {
      destroyed = true;
      device.destroy();
    },
  };
}

export function describeGpu(gpu: Gpu): string {
  const a = gpu.adapter;
  return `${adapterName(a)}${a.isSoftware ? " (software)" : ""}`;
}
