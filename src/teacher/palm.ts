/**
 * The shipped PaLM-540B rationales (Distilling Step-by-Step's llm/ files, parsed by src/data/palm.ts) as ordinary
 * rationale-store records, so listing, distillation and training work offline with no teacher API at all.
 * Model "palm-540b", template "palm-cot@distilling-step-by-step", source "import", no token counts or cost.
 * Items are keyed by dataset + id like any teacher answer, so importing twice inserts nothing the second time.
 */
import { palmRationales } from "../data/palm.ts";
import { getDataset, loadSplit, type SplitOptions } from "../data/registry.ts";
import type { RationaleStore } from "../store/rationales.ts";
import { agreesWithGold } from "./parse.ts";

export const PALM_MODEL = "palm-540b";
export const PALM_TEMPLATE = "palm-cot@distilling-step-by-step";

export interface PalmImportReport {
  dataset: string;
  split: string;
  /** Items in the split. */
  items: number;
  inserted: number;
  /** Already stored (an earlier import). */
  duplicates: number;
  /** Items where PaLM never reached an answer: there is no rationale to import. */
  unanswered: number;
}

export async function importPalmRationales(
  store: RationaleStore,
  dataset: string,
  split: string,
  opts: SplitOptions = {},
): Promise<PalmImportReport> {
  const format = getDataset(dataset).answerKind === "choice" ? "multiple-choice" : "math";
  const answerPhrase = format === "multiple-choice" ? "So the answer is" : "The answer is";
  const [items, palm] = await Promise.all([loadSplit(dataset, split, opts), palmRationales(dataset, split, opts)]);
  const records = items.flatMap((item, i) => {
    const entry = palm[i];
    if (!entry) return [];
    return [
      {
        dataset: item.dataset,
        split: item.split,
        itemId: item.id,
        question: item.question,
        choices: item.choices ?? null,
        answer: item.answer,
        sampleIndex: 0,
        model: PALM_MODEL,
        template: PALM_TEMPLATE,
        params: {},
        rationale: entry.rationale,
        label: entry.label,
        agrees: agreesWithGold(entry.label, item.answer, format),
        // re-assembled from the parsed parts: the text up to PaLM's answer, without the next question it invented
        rawCompletion: `${entry.rationale} ${answerPhrase} ${entry.answerText}`,
        promptTokens: null,
        completionTokens: null,
        latencyMs: null,
        costUsd: null,
        source: "import" as const,
      },
    ];
  });
  const inserted = store.putMany(records);
  return {
    dataset,
    split,
    items: items.length,
    inserted,
    duplicates: records.length - inserted,
    unanswered: items.length - records.length,
  };
}
