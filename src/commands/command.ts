import { parseArgs, type ParseArgsConfig } from "node:util";
import { UserError } from "../errors.ts";
import { type Dtype, parseDtype } from "../model/safetensors.ts";

export interface Command {
  summary: string;
  /** Full --help text. */
  help: string;
  /** Commands that open a WebGPU device are re-run with the software adapter visible when needed. */
  usesGpu?: boolean;
  /** Returns the exit code. Throw UserError for bad input: the CLI prints its message as one line. */
  run(argv: string[]): Promise<number>;
}

/** node:util parseArgs with errors turned into one readable line. */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UserError((err as Error).message.split("\n")[0].replace(/^TypeError \[\w+\]: /, ""));
  }
}

export function intFlag(value: string | undefined, name: string, fallback?: number, min = 0): number {
  if (value === undefined) {
    if (fallback === undefined) throw new UserError(`--${name} is required`);
    return fallback;
  }
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new UserError(`--${name} must be an integer >= ${min}, got "${value}"`);
  return n;
}

export function numberFlag(value: string | undefined, name: string, fallback?: number): number {
  if (value === undefined) {
    if (fallback === undefined) throw new UserError(`--${name} is required`);
    return fallback;
  }
  const n = Number(value);
  if (!Number.isFinite(n)) throw new UserError(`--${name} must be a number, got "${value}"`);
  return n;
}

export function requiredFlag(value: string | undefined, name: string): string {
  if (value === undefined || value === "") throw new UserError(`--${name} is required`);
  return value;
}

/** `--save-dtype f32|bf16|f16` (torch's names too: float32, bfloat16, float16); undefined when not given. */
export function saveDtypeFlag(value: string | undefined): Dtype | undefined {
  if (value === undefined) return undefined;
  const dtype = parseDtype(value);
  if (!dtype || dtype === "F64") throw new UserError(`--save-dtype must be f32, bf16 or f16, got "${value}"`);
  return dtype;
}
