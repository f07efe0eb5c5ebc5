/**
 * The weights of a Hugging Face model folder as named tensors, whatever the family: one `model.safetensors`, or
 * shards listed by `model.safetensors.index.json` ({"metadata": {"total_size"}, "weight_map": {name: file}}), in
 * F32, F16 or BF16 (widened to float32 for training). Saving writes the same layout back — HF names, one file or
 * shards of at most `maxShardBytes` with their index, in the dtype asked for — which `from_pretrained` loads.
 * Only safetensors are read: a folder with only pytorch_model.bin is refused with one line that says so.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { type Dtype, readSafetensorsFile, storedBytes, type TensorToWrite, toFloat32, writeSafetensorsFile } from "./safetensors.ts";

export const WEIGHTS_FILE = "model.safetensors";
export const WEIGHTS_INDEX_FILE = "model.safetensors.index.json";

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
  /** The dtype it was stored in. */
  dtype: Dtype;
  /** The file it came from (for error messages). */
  file: string;
}

/** The safetensors files of a folder: the index's shards (in index order) or the single file. */
export function weightFiles(dir: string): string[] {
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  if (existsSync(indexPath)) {
    const index = readIndex(indexPath);
    const files = [...new Set(Object.values(index.weight_map))];
    for (const file of files) if (!existsSync(join(dir, file))) throw new UserError(`${indexPath}: shard ${file} is missing`, 404);
    return files.map((f) => join(dir, f));
  }
  const single = join(dir, WEIGHTS_FILE);
  if (existsSync(single)) return [single];
  const torchOnly = existsSync(dir) && readdirSync(dir).some((f) => /^pytorch_model.*\.bin$/.test(f));
  throw new UserError(
    `${dir}: no ${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}${torchOnly ? " (only pytorch_model.bin, which is not read: convert it to safetensors)" : ""}`,
    404,
  );
}

interface WeightsIndex {
  metadata?: Record<string, unknown>;
  weight_map: Record<string, string>;
}

function readIndex(path: string): WeightsIndex {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new UserError(`${path}: invalid JSON (${(err as Error).message})`, 422);
  }
  const map = (json as WeightsIndex | null)?.weight_map;
  if (typeof map !== "object" || map === null || Object.values(map).some((f) => typeof f !== "string" || f.includes("/"))) {
    throw new UserError(`${path}: expected {"weight_map": {tensor name: shard file in this folder}}`, 422);
  }
  return json as WeightsIndex;
}

/**
 * Every tensor of the folder as float32, by HF name. A tensor in two shards, or one the index places in a shard
 * that does not hold it, is an error: a checkpoint is read as a whole or not at all.
 */
export async function readWeights(dir: string): Promise<Map<string, NamedTensor>> {
  const files = weightFiles(dir);
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  const index = existsSync(indexPath) ? readIndex(indexPath) : undefined;
  const tensors = new Map<string, NamedTensor>();
  for (const path of files) {
    const file = await readSafetensorsFile(path);
    for (const [name, entry] of file.tensors) {
      const previous = tensors.get(name);
      if (previous) throw new UserError(`${path}: tensor ${name} is also in ${previous.file}`, 422);
      tensors.set(name, { shape: entry.shape, data: toFloat32(entry), dtype: entry.dtype, file: path });
    }
  }
  if (index) {
    for (const [name, shard] of Object.entries(index.weight_map)) {
      const found = tensors.get(name);
      if (!found) throw new UserError(`${indexPath}: tensor ${name} is not in ${shard}`, 422);
    }
  }
  return tensors;
}

/** The dtype most of a checkpoint's tensors are stored in (what saving "as loaded" writes). */
export function storedDtype(tensors: Map<string, NamedTensor>): Dtype {
  const counts = new Map<Dtype, number>();
  for (const t of tensors.values()) counts.set(t.dtype, (counts.get(t.dtype) ?? 0) + t.data.length);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "F32";
}

export interface SaveWeightsOptions {
  /** Stored dtype of every tensor (default F32). */
  dtype?: Dtype;
  /** Largest shard in bytes; a checkpoint bigger than this is split into model-0000i-of-0000n.safetensors (default 5 GB, as transformers). */
  maxShardBytes?: number;
}

const DEFAULT_SHARD_BYTES = 5_000_000_000;

/**
 * Writes tensors (in the given order) as HF does: model.safetensors, or shards named model-00001-of-00003.safetensors
 * with model.safetensors.index.json. Weight files left by an earlier save in the folder are removed first, so a folder
 * never holds both forms.
 */
export async function writeWeights(dir: string, tensors: TensorToWrite[], options: SaveWeightsOptions = {}): Promise<string[]> {
  const dtype = options.dtype ?? "F32";
  const maxShard = options.maxShardBytes ?? DEFAULT_SHARD_BYTES;
  await mkdir(dir, { recursive: true });
  for (const f of readdirSync(dir)) if (f === WEIGHTS_INDEX_FILE || /^model(-\d+-of-\d+)?\.safetensors$/.test(f)) rmSync(join(dir, f));
  const typed = tensors.map((t) => ({ ...t, dtype }));
  const shards: TensorToWrite[][] = [[]];
  let shardBytes = 0;
  for (const t of typed) {
    const bytes = storedBytes(t);
    // a tensor bigger than a shard gets a shard of its own, as transformers does
    if (shardBytes > 0 && shardBytes + bytes > maxShard) {
      shards.push([]);
      shardBytes = 0;
    }
    shards.at(-1)!.push(t);
    shardBytes += bytes;
  }
  // transformers refuses safetensors files whose metadata does not say which framework wrote them
  const metadata = { format: "pt" };
  if (shards.length === 1) {
    await writeSafetensorsFile(join(dir, WEIGHTS_FILE), shards[0], metadata);
    return [join(dir, WEIGHTS_FILE)];
  }
  const pad = (n: number) => String(n).padStart(5, "0");
  const weightMap: Record<string, string> = {};
  const paths: string[] = [];
  let totalSize = 0;
  for (const [i, shard] of shards.entries()) {
    const name = `model-${pad(i + 1)}-of-${pad(shards.length)}.safetensors`;
    await writeSafetensorsFile(join(dir, name), shard, metadata);
    for (const t of shard) {
      weightMap[t.name] = name;
      totalSize += storedBytes(t);
    }
    paths.push(join(dir, name));
  }
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  await Bun.write(indexPath, JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + "\n");
  return [indexPath, ...paths];
}
