/**
 * What padding costs distillation: positions processed (Σ B·T over the batches) against positions that hold a real
 * prediction and positions with a non-zero loss weight, for each batching of src/train/batches.ts, over B whole
 * epochs (so the padded order, which runs across epoch ends, sees every example B times as well). CPU only.
 *
 *   bun bench/padding.ts [--dataset cqa] [--rationales palm] [--placement after] [--batch-size 8] [--seed 0] [--json]
 */
import { parseArgs } from "node:util";
import { toSequence } from "../src/distill/example.ts";
import { parseRunSpec } from "../src/distill/run-spec.ts";
import { distillationExamples } from "../src/distill/train.ts";
import { Rng } from "../src/model/rng.ts";
import { BATCHINGS, SequenceSource } from "../src/train/batches.ts";

const { values } = parseArgs({
  options: { dataset: { type: "string" }, rationales: { type: "string" }, placement: { type: "string" }, "batch-size": { type: "string" }, seed: { type: "string" }, json: { type: "boolean" } },
});
const spec = parseRunSpec({
  dataset: values.dataset ?? "cqa",
  placement: values.placement ?? "after",
  ...(values.rationales ? { rationales: values.rationales } : {}),
  seed: Number(values.seed ?? 0),
});
const { examples, report } = await distillationExamples(spec, { log: () => {} });
const sequences = examples.map(toSequence);
const n = sequences.length;
const B = Math.min(Number(values["batch-size"] ?? 8), n);
const T = Math.max(...sequences.map((s) => s.ids.length)) - 1; // as train.ts sizes a run without --max-seq-length
const predictions = B * sequences.reduce((sum, s) => sum + Math.min(s.ids.length - 1, T), 0);
const result = BATCHINGS.map((batching) => {
  const source = new SequenceSource(sequences, B, T, batching);
  const rng = new Rng(spec.seed);
  let [processed, weighted, rows, batches] = [0, 0, 0, 0];
  while (rows < n * B) {
    const batch = source.next(rng);
    processed += batch.B * batch.T;
    rows += batch.B;
    batches++;
    for (const w of batch.weights) if (w !== 0) weighted++;
  }
  return { batching, batches, processed, padding: 1 - predictions / processed, weighted_fraction: weighted / processed };
});
const summary = { dataset: spec.dataset, rationales: report.name, placement: spec.placement, examples: n, B, T, epochs: B, predictions, result };
if (values.json) console.log(JSON.stringify(summary));
else {
  console.log(`${spec.dataset} (${report.name} rationales, placement ${spec.placement}): ${n} examples, B=${B}, longest T=${T}, ${B} epochs`);
  for (const r of result) {
    console.log(`  ${r.batching.padEnd(9)} ${String(r.processed).padStart(10)} positions processed   padding ${(100 * r.padding).toFixed(1)}%   weighted ${(100 * r.weighted_fraction).toFixed(1)}%`);
  }
  const [bucketed, padded] = result;
  console.log(`  positions processed: bucketed / padded = ${(bucketed.processed / padded.processed).toFixed(3)}`);
}
