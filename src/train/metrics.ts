/** Training metrics, one JSON object per line, appended and flushed per step so a crash loses nothing logged. */
import { appendFileSync, mkdirSync, readFileSync, existsSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  /** Weighted tokens the loss was computed over in this step. */
  tokens: number;
  elapsed_s: number;
}

export class MetricsLog {
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
  }

  append(m: StepMetrics): void {
    appendFileSync(this.path, `${JSON.stringify(m)}\n`);
  }

  /** Drops lines after `step` — used on resume, so the log matches the run being continued. */
  truncateAfter(step: number): void {
    if (!existsSync(this.path)) return;
    const kept = readMetrics(this.path).filter((m) => m.step <= step);
    writeFileSync(this.path, kept.map((m) => `${JSON.stringify(m)}\n`).join(""));
  }
}

export function readMetrics(path: string): StepMetrics[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as StepMetrics);
}
