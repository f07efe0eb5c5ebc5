/**
 * Checkpoints: <run>/checkpoints/step-NNNNNN/ holding a Hugging Face model folder (config.json, model.safetensors,
 * plus the tokenizer files) — or for a LoRA run config.json and the PEFT adapter files only (the frozen base is the
 * run's base model, not copied) —, optimizer.safetensors (AdamW m and v of what is trained, in its flat layout), trainer.json (step, RNG
 * state, data position, run options) and manifest.json (SHA-256 of every file), written last. A checkpoint is built
 * in a temporary folder and renamed into place, so a crash never leaves a half-written one under the real name;
 * loading verifies every hash and refuses a corrupt checkpoint without touching any other.
 */
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { UserError } from "../errors.ts";
import type { ModelConfig } from "../model/config.ts";
import { CONFIG_FILE, loadHFModel, readConfig, saveHFModel } from "../model/hf.ts";
import { configToHF } from "../model/family.ts";
import { isLoraAdapterDir, loadLoraAdapter, type LoraLayout, saveLoraAdapter } from "../model/lora.ts";
import { readSafetensorsFile, toFloat32, writeSafetensorsFile } from "../model/safetensors.ts";
import type { TrainerState } from "./trainer.ts";

export const CHECKPOINT_DIR = "checkpoints";
const MANIFEST = "manifest.json";

export interface CheckpointContents {
  config: ModelConfig;
  /** Every parameter (empty for a LoRA run: its base is frozen and not saved). */
  params: Float32Array;
  /** A LoRA run's adapters (m and v are theirs). */
  lora?: { layout: LoraLayout; adapters: Float32Array };
  m: Float32Array;
  v: Float32Array;
  trainer: TrainerState;
  /** Whatever the run wants back on resume (options, data settings…). */
  run: Record<string, unknown>;
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, "0")}`;
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function assertFinite(name: string, values: Float32Array): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new Error(`refusing to write a checkpoint: ${name}[${i}] is ${values[i]}`);
  }
}

/** Writes a checkpoint; `extraFiles` (e.g. the tokenizer's vocab.json, merges.txt) are copied into it. */
export async function saveCheckpoint(runDir: string, c: CheckpointContents, extraFiles: string[] = [], keepLast = 3): Promise<string> {
  assertFinite("params", c.params);
  assertFinite("adam.m", c.m);
  assertFinite("adam.v", c.v);
  const root = join(runDir, CHECKPOINT_DIR);
  mkdirSync(root, { recursive: true });
  const name = checkpointName(c.trainer.step);
  const tmp = join(root, `.tmp-${name}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  if (c.lora) {
    assertFinite("adapters", c.lora.adapters);
    mkdirSync(tmp, { recursive: true });
    writeFileSync(join(tmp, CONFIG_FILE), JSON.stringify(configToHF(c.config), null, 2) + "\n");
    await saveLoraAdapter(tmp, c.config, c.lora.layout, c.lora.adapters);
  } else {
    await saveHFModel(tmp, { config: c.config, params: c.params });
  }
  await writeSafetensorsFile(join(tmp, "optimizer.safetensors"), [
    { name: "m", shape: [c.m.length], data: c.m },
    { name: "v", shape: [c.v.length], data: c.v },
  ]);
  writeFileSync(join(tmp, "trainer.json"), JSON.stringify({ trainer: c.trainer, run: c.run }));
  for (const file of extraFiles) copyFileSync(file, join(tmp, basename(file)));
  const files = readdirSync(tmp).sort();
  const manifest = Object.fromEntries(files.map((f) => [f, sha256(join(tmp, f))]));
  writeFileSync(join(tmp, MANIFEST), JSON.stringify({ step: c.trainer.step, files: manifest }, null, 1));
  const final = join(root, name);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  for (const old of listCheckpoints(runDir).slice(0, -keepLast)) rmSync(old, { recursive: true, force: true });
  return final;
}

/** Checkpoint folders of a run, oldest first (only complete ones: those with a manifest). */
export function listCheckpoints(runDir: string): string[] {
  const root = join(runDir, CHECKPOINT_DIR);
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((n) => /^step-\d+$/.test(n) && existsSync(join(root, n, MANIFEST)))
    .sort()
    .map((n) => join(root, n));
}

export function latestCheckpoint(runDir: string): string | undefined {
  return listCheckpoints(runDir).at(-1);
}

/** Verifies the manifest's hashes; throws a UserError naming the first bad file. */
export function verifyCheckpoint(dir: string): void {
  const manifestPath = join(dir, MANIFEST);
  if (!existsSync(manifestPath)) throw new UserError(`checkpoint ${dir} is incomplete (no ${MANIFEST})`, 422);
  let manifest: { files: Record<string, string> };
  try {
    manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  } catch {
    throw new UserError(`checkpoint ${dir} is corrupt: ${MANIFEST} is not valid JSON`, 422);
  }
  for (const [file, hash] of Object.entries(manifest.files ?? {})) {
    const path = join(dir, file);
    if (!existsSync(path)) throw new UserError(`checkpoint ${dir} is corrupt: ${file} is missing`, 422);
    if (sha256(path) !== hash) throw new UserError(`checkpoint ${dir} is corrupt: ${file} does not match its SHA-256 in ${MANIFEST}`, 422);
  }
}

export async function loadCheckpoint(dir: string): Promise<CheckpointContents> {
  verifyCheckpoint(dir);
  const lora = isLoraAdapterDir(dir);
  const model = lora ? { config: await readConfig(dir), params: new Float32Array(0) } : await loadHFModel(dir);
  const optimizer = await readSafetensorsFile(join(dir, "optimizer.safetensors"));
  const m = optimizer.tensors.get("m");
  const v = optimizer.tensors.get("v");
  if (!m || !v) throw new UserError(`checkpoint ${dir}: optimizer.safetensors lacks m or v`, 422);
  const { trainer, run } = JSON.parse(readFileSync(join(dir, "trainer.json"), "utf8"));
  return { config: model.config, params: model.params, ...(lora ? { lora: await loadLoraAdapter(dir, model.config) } : {}), m: toFloat32(m), v: toFloat32(v), trainer, run };
}
