/**
 * Students kept loaded between requests (the server's inference worker, src/server/worker.ts): one GPU device and
 * one compilation of every kernel for the process, and the last few students — weights, tokenizer and a decoder
 * whose buffers hold them on the GPU — in a small LRU keyed by the student's folder and the modification times of
 * its model files, so a retrained or replaced model is loaded afresh and a repeated request costs no loading.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Database } from "bun:sqlite";
import { acquireGpu, type Gpu } from "../gpu/device.ts";
import { createKernels, type Kernels } from "../gpu/kernels/index.ts";
import { readRunSettings } from "../distill/train.ts";
import { Decoder } from "./decode.ts";
import { loadStudent, resolveTarget, type Student } from "./student.ts";

interface Entry {
  student: Student;
  decoder: Decoder | null;
}

/** Latest modification time of the files in a folder (0 when it cannot be read: loading will say why). */
function newestFile(dir: string): number {
  try {
    return Math.max(0, ...readdirSync(dir).map((name) => statSync(join(dir, name)).mtimeMs));
  } catch {
    return 0;
  }
}

export class StudentCache {
  private readonly entries = new Map<string, Entry>();
  private device: Promise<{ gpu: Gpu; kernels: Kernels }> | null = null;
  /** Loads (not hits) so far, for tests and logs. */
  loads = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) throw new RangeError("the student cache holds at least 1 student");
  }

  /** The process's GPU and kernels, made on first use. */
  gpu(): Promise<{ gpu: Gpu; kernels: Kernels }> {
    this.device ??= acquireGpu().then(async (gpu) => ({ gpu, kernels: await createKernels(gpu) }));
    return this.device;
  }

  /** The student for a target (as loadStudent resolves it), from the cache when its files have not changed. */
  async student(target: string, db?: Database | string): Promise<Student> {
    const dir = resolveTarget(target, db);
    const modelDir = readRunSettings(dir) ? join(dir, "model") : dir;
    const key = `${dir}\u0000${newestFile(modelDir)}\u0000${newestFile(dir)}`;
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key); // re-inserted: most recently used last
      this.entries.set(key, hit);
      return hit.student;
    }
    const student = await loadStudent(dir, db);
    this.loads++;
    for (const [old, entry] of this.entries) {
      if (old.startsWith(`${dir}\u0000`)) this.evict(old, entry); // an older version of the same folder
    }
    while (this.entries.size >= this.capacity) {
      const [oldest, entry] = this.entries.entries().next().value!;
      this.evict(oldest, entry);
    }
    this.entries.set(key, { student, decoder: null });
    return student;
  }

  /** A decoder of at least maxRows × maxLength for a cached student, reused while it is big enough. */
  async decoder(student: Student, maxRows: number, maxLength: number): Promise<Decoder> {
    const entry = [...this.entries.values()].find((e) => e.student === student);
    if (!entry) throw new Error("decoder(): the student is not in the cache");
    const current = entry.decoder;
    if (current && current.maxRows >= maxRows && current.maxLength >= maxLength) return current;
    const { gpu, kernels } = await this.gpu();
    const rows = Math.max(maxRows, current?.maxRows ?? 0);
    const length = Math.max(maxLength, current?.maxLength ?? 0);
    current?.destroy();
    entry.decoder = null;
    entry.decoder = new Decoder(gpu, kernels, student.config, student.params, rows, length);
    return entry.decoder;
  }

  get size(): number {
    return this.entries.size;
  }

  private evict(key: string, entry: Entry): void {
    entry.decoder?.destroy();
    this.entries.delete(key);
  }

  /** Frees every student's GPU buffers, then the device (when one was made). */
  async destroy(): Promise<void> {
    for (const [key, entry] of this.entries) this.evict(key, entry);
    if (this.device) (await this.device.catch(() => null))?.gpu.destroy();
    this.device = null;
  }
}
