/** A kernel module's private scratch buffer, grown on demand (split-K partial products, reduction partials). */
import type { Gpu } from "../device.ts";
import { bind, createStorage } from "../buffers.ts";
import type { Binding } from "../recorder.ts";

export class Scratch {
  private buffer: GPUBuffer | null = null;

  constructor(private readonly gpu: Gpu, private readonly label: string) {}

  /** A binding of at least `floats` f32s. A replaced smaller buffer is left to the GC, never destroyed here:
   *  work recorded but not yet submitted may still use it. */
  floats(floats: number): Binding {
    const bytes = Math.max(4, floats * 4);
    if (!this.buffer || this.buffer.size < bytes) this.buffer = createStorage(this.gpu, this.label, bytes);
    return bind(this.buffer, 0, bytes);
  }
}
