/**
 * A trained student as evaluation sees it: weights, tokenizer, and the condition it was trained under (placement
 * and template decide how it is decoded). Found from a run folder (run.json + model/), a bare Hugging Face model
 * folder (decoded as placement "after": the label first), a PEFT LoRA adapter folder (merged onto the base its
 * adapter_config.json names; a LoRA run's adapter/ is one), or a run id / name in the runs table.
 */
import type { Database } from "bun:sqlite";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { ModelConfig } from "../model/config.ts";
import { loadHFModel } from "../model/hf.ts";
import { loadModelTokenizer, type ModelTokenizer } from "../model/hf-tokenizer.ts";
import { ADAPTER_CONFIG_FILE, loadAdaptedModel } from "../model/lora.ts";
import { DEFAULT_TEMPLATE, type Placement, type Template } from "../distill/placement.ts";
import { readRunSettings, type RunSettings } from "../distill/train.ts";
import { DEFAULT_DB_PATH } from "../store/db.ts";
import { openRunStore } from "../store/runs.ts";

export interface Student {
  modelDir: string;
  /** Where evaluation files are written: the run folder, or the model folder for a bare model. */
  outDir: string;
  run: RunSettings | null;
  placement: Placement;
  template: Template;
  config: ModelConfig;
  params: Float32Array;
  codec: ModelTokenizer;
  /** Prompts go through the chat template (the run was trained with --chat-template). */
  chat: boolean;
}

/** A run folder (or a run's id/name in the database) → its folder; a model folder → itself. */
export function resolveTarget(target: string, db?: Database | string): string {
  if (["run.json", "config.json", ADAPTER_CONFIG_FILE].some((f) => existsSync(join(target, f)))) return target;
  // without a database to look in, an id cannot be resolved; do not create an empty database file to find that out
  if (db === undefined && !existsSync(DEFAULT_DB_PATH)) throw new UserError(`no run or model folder "${target}"`, 404);
  const { runs, close } = openRunStore(db);
  try {
    const run = runs.find(target);
    if (!run) throw new UserError(`no run "${target}" (neither a folder nor a run id or name in the database)`, 404);
    return run.runDir;
  } finally {
    close();
  }
}

export async function loadStudent(target: string, db?: Database | string): Promise<Student> {
  const dir = resolveTarget(target, db);
  const run = readRunSettings(dir);
  const modelDir = run ? join(dir, "model") : dir;
  if (run && !existsSync(join(modelDir, "config.json"))) {
    throw new UserError(`run ${run.name} has no trained model yet (${modelDir} is missing: still training, or stopped early)`, 409);
  }
  if (!run && !existsSync(join(dir, "config.json")) && existsSync(join(dir, ADAPTER_CONFIG_FILE))) return adaptedStudent(dir);
  const [loaded, codec] = await Promise.all([loadHFModel(modelDir), loadModelTokenizer(modelDir)]);
  return {
    modelDir,
    outDir: dir,
    run,
    placement: run?.placement ?? "after",
    template: run?.template ?? DEFAULT_TEMPLATE,
    config: loaded.config,
    params: loaded.params,
    codec,
    chat: run?.chatTemplate ?? false,
  };
}

/** A PEFT adapter folder: the base with the adapter merged; its tokenizer, or the base's when it has none; decoded as "after". */
async function adaptedStudent(dir: string): Promise<Student> {
  const model = await loadAdaptedModel(dir);
  const codec = await loadModelTokenizer(dir).catch(() => loadModelTokenizer(model.baseDir));
  // a LoRA run's adapter/ sits in its run folder: decode as that run was trained
  const run = readRunSettings(join(dir, ".."));
  return {
    modelDir: dir, outDir: dir, run, placement: run?.placement ?? "after", template: run?.template ?? DEFAULT_TEMPLATE,
    config: model.config, params: model.params, codec, chat: run?.chatTemplate ?? false,
  };
}
