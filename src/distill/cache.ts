/**
 * .cache/ (git-ignored): what is derived from the shipped data once and reused by every command — compact
 * tokenizers, attribution statistics. COT_DISTILL_CACHE moves it (tests use a temp folder).
 */
import { resolve, join } from "node:path";

export function cachePath(...parts: string[]): string {
  return join(process.env.COT_DISTILL_CACHE ?? resolve(import.meta.dir, "../../.cache"), ...parts);
}
