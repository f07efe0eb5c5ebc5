/** Storage buffers, uploads and read-backs. Read-back staging buffers are pooled by size. */
import type { Gpu } from "./device.ts";
import type { Binding } from "./recorder.ts";

export const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Byte offsets of tensors packed into one buffer are multiples of this (minStorageBufferOffsetAlignment). */
export const TENSOR_ALIGN = 256;

export function alignUp(n: number, to = TENSOR_ALIGN): number {
  return Math.ceil(n / to) * to;
}

export function createStorage(gpu: Gpu, label: string, bytes: number): GPUBuffer {
  const size = Math.max(16, alignUp(bytes, 16));
  if (size > gpu.device.limits.maxBufferSize) {
    throw new Error(`buffer "${label}" needs ${size} bytes; the adapter allows ${gpu.device.limits.maxBufferSize}`);
  }
  return gpu.device.createBuffer({ label, size, usage: STORAGE() });
}

/** A binding of a whole buffer or, with offset/size in bytes, part of it. */
export function bind(buffer: GPUBuffer, offset = 0, size = buffer.size - offset): Binding {
  return { buffer, offset, size };
}

export function upload(gpu: Gpu, target: Binding, data: ArrayBufferView): void {
  gpu.device.queue.writeBuffer(target.buffer, target.offset ?? 0, data.buffer, data.byteOffset, data.byteLength);
}

const stagingPool = new WeakMap<GPUDevice, GPUBuffer[]>();

/** Copies `source` back to the CPU. Waits for all work submitted before it. */
export async function readBytes(gpu: Gpu, source: Binding): Promise<ArrayBuffer> {
  const offset = source.offset ?? 0;
  const size = source.size ?? source.buffer.size - offset;
  const padded = alignUp(size, 4);
  let pool = stagingPool.get(gpu.device);
  if (!pool) stagingPool.set(gpu.device, (pool = []));
  const index = pool.findIndex((b) => b.size >= padded && b.size <= padded * 2);
  const staging =
    index >= 0
      ? pool.splice(index, 1)[0]
      : gpu.device.createBuffer({ label: "readback", size: padded, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = gpu.device.createCommandEncoder();
  encoder.copyBufferToBuffer(source.buffer, offset, staging, 0, padded);
  gpu.device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ, 0, padded);
  const copy = staging.getMappedRange(0, padded).slice(0, size);
  staging.unmap();
  pool.push(staging);
  gpu.throwIfFailed();
  return copy;
}

export async function readFloat32(gpu: Gpu, source: Binding): Promise<Float32Array> {
  return new Float32Array(await readBytes(gpu, source));
}
