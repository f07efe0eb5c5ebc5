/**
 * Records compute dispatches into one command encoder and submits them together. Kernel parameters go into a
 * uniform arena written once per submit, and bind groups are cached by (pipeline, bindings, arena offset) — a
 * training step replays the same sequence every time, so after the first step nothing is allocated per dispatch.
 *
 * Binding convention for every kernel in shaders/: @group(0) @binding(0) is the `Params` uniform (4-byte words:
 * u32 or f32 bit patterns, see `f32bits`), and @binding(1…n) are the storage buffers, in the order passed.
 */
import type { Gpu } from "./device.ts";

const PARAM_STRIDE = 256; // minUniformBufferOffsetAlignment on every adapter we target
const MAX_PARAM_WORDS = PARAM_STRIDE / 4;

const f32scratch = new Float32Array(1);
const u32view = new Uint32Array(f32scratch.buffer);
/** The bit pattern of a float, for passing f32 values through the u32 parameter words. */
export function f32bits(x: number): number {
  f32scratch[0] = x;
  return u32view[0];
}

let nextId = 1;
const ids = new WeakMap<object, number>();
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
}

export type Binding = GPUBufferBinding & { buffer: GPUBuffer };
export type Grid = readonly [number, number?, number?];

export class Recorder {
  private arena: GPUBuffer;
  private arenaWords: Uint32Array;
  private used = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  dispatches = 0;

  constructor(private readonly gpu: Gpu, capacity = 4096) {
    this.arena = this.makeArena(capacity);
    this.arenaWords = new Uint32Array((capacity * PARAM_STRIDE) / 4);
  }

  private makeArena(slots: number): GPUBuffer {
    return this.gpu.device.createBuffer({
      label: "kernel params",
      size: slots * PARAM_STRIDE,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.encoder ??= this.gpu.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  /** The open command encoder, outside any compute pass (for copies and clears between dispatches). */
  commandEncoder(): GPUCommandEncoder {
    this.pass?.end();
    this.pass = null;
    this.encoder ??= this.gpu.device.createCommandEncoder();
    return this.encoder;
  }

  dispatch(pipeline: GPUComputePipeline, params: ArrayLike<number>, bindings: readonly Binding[], grid: Grid): void {
    if (params.length > MAX_PARAM_WORDS) throw new Error(`too many kernel params: ${params.length}`);
    const [x, y = 1, z = 1] = grid;
    if (x === 0 || y === 0 || z === 0) return;
    const limit = this.gpu.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > limit || y > limit || z > limit) throw new Error(`dispatch grid ${x}x${y}x${z} exceeds ${limit} per dimension`);
    if ((this.used + 1) * MAX_PARAM_WORDS > this.arenaWords.length) this.grow();
    const slot = this.used++;
    this.arenaWords.set(params as ArrayLike<number>, slot * MAX_PARAM_WORDS);

    let key = `${idOf(pipeline)}|${slot}`;
    for (const b of bindings) key += `|${idOf(b.buffer)}:${b.offset ?? 0}:${b.size ?? -1}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      if (this.bindGroups.size > 20000) this.bindGroups.clear();
      group = this.gpu.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: this.arena, offset: slot * PARAM_STRIDE, size: PARAM_STRIDE } },
          ...bindings.map((resource, i) => ({ binding: i + 1, resource })),
        ],
      });
      this.bindGroups.set(key, group);
    }
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    this.dispatches++;
  }

  private grow(): void {
    const slots = (this.arenaWords.length / MAX_PARAM_WORDS) * 2;
    // Bind groups recorded so far point at the old arena: flush them before replacing it.
    if (this.encoder || this.used) this.submit();
    this.arena.destroy();
    this.arena = this.makeArena(slots);
    const words = new Uint32Array(slots * MAX_PARAM_WORDS);
    words.set(this.arenaWords);
    this.arenaWords = words;
    this.bindGroups.clear();
  }

  /** Ends the pass, uploads the params, submits. Returns the number of dispatches submitted. */
  submit(): number {
    if (this.used === 0 && !this.encoder) return 0;
    this.pass?.end();
    this.pass = null;
    const encoder = this.encoder ?? this.gpu.device.createCommandEncoder();
    this.encoder = null;
    if (this.used > 0) {
      this.gpu.device.queue.writeBuffer(this.arena, 0, this.arenaWords.buffer, 0, this.used * PARAM_STRIDE);
    }
    this.gpu.device.queue.submit([encoder.finish()]);
    const n = this.dispatches;
    this.used = 0;
    this.dispatches = 0;
    this.gpu.throwIfFailed();
    return n;
  }
}
