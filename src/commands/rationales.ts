import { UserError } from "../errors.ts";
import { DEFAULT_DB_PATH } from "../store/db.ts";
import * as v from "valibot";
import type { JobEstimate, JobSnapshot } from "../teacher/jobs.ts";
import { BUILTIN_TEMPLATES, exemplarFileContent, PromptOptionsSchema, type PromptOptions } from "../teacher/prompts.ts";
import { RATIONALE_PARTS, rationaleText, type RationalePart } from "../store/rationales.ts";
import { importPalmRationales } from "../teacher/palm.ts";
import { openTeacherRuntime, type TeacherRuntime } from "../teacher/runtime.ts";
import type { Command } from "./command.ts";
import { intFlag, numberFlag, parseFlags, requiredFlag } from "./command.ts";
import { teacherClientFlags, teacherClientOptions } from "./teacher-flags.ts";

export const command: Command = {
  summary: "generate teacher rationales for a dataset split (durable bulk job), or import the shipped PaLM ones",
  help: `usage: bun src/cli.ts rationales --dataset D --split S [options]
       bun src/cli.ts rationales --resume JOB_ID | --retry-failed JOB_ID [--db PATH]
       bun src/cli.ts rationales --import-palm --dataset D --split S [--db PATH]
       bun src/cli.ts rationales --export FILE --dataset D [--split S] [--teacher-model M] [--rationale-part P]

Runs the same durable job as POST /v1/jobs, in this process, with a progress line on stderr (done / cached / failed,
tokens, cost, ETA) and a summary at the end. Answers go to the same store as the service: anything already stored
is not requested again. Interrupted (Ctrl-C, crash)? Run again with --resume, or let \`serve\` pick the job up.
  --dataset D            dataset name (cqa, svamp, or a registered one)
  --split S              train, test or dev
  --limit N              only the first N items
  --concurrency C        items in flight (default: --max-concurrency)
  --n N                  samples per item (default 1)
  --temperature T        sampling temperature (default 0)
  --max-tokens N         completion budget per sample (default 256)
  --structured           ask for {rationale, answer} JSON (response_format json_schema; part of the cache key); a
                         server that refuses it is asked in plain text instead, and says so once
  --batch                use the Batch API (upload, create, poll, download; resumable; priced at the batch rate)
  --template T           exemplar file (JSON, as src/teacher/exemplars/*.json) or a shipped one: cqa, svamp,
                         strategyqa, short-answer (default: the item's format: multiple choice, math, yes/no, or a
                         short free-form answer)
  --format F             multiple-choice, math, yes-no, short-answer (or free), when the item does not say
  --shots K              exemplars shown (default all; 0 = zero-shot: an instruction instead)
  --mode M               free (default: the teacher answers) or explain (label-conditioned: shown the gold
                         answer, asked to explain it)
  --dry-run              print items, estimated tokens and cost, and exit without asking the teacher
  --max-cost USD         stop claiming items once the job has spent this much; finished answers are kept and
                         --resume JOB --max-cost HIGHER continues it
  --poll-seconds S       Batch API status poll interval (default 30)
  --resume JOB_ID        continue an unfinished job
  --retry-failed JOB_ID  run the failed items of a finished job again
  --import-palm          load the shipped PaLM-540B rationales of the split into the store (offline, idempotent)
  --export FILE          write the stored rationales (sample 0 of each item) as JSON lines {id, rationale, label, …}
                         that \`train --rationales FILE\` reads
  --rationale-part P     what --export writes as the rationale: explanation (the visible answer, default), reasoning
                         (a reasoning model's trace) or both; items without that part are left out
  --db PATH              SQLite database (default $COT_DISTILL_DB or cot-distill.sqlite)
  --json                 print the final job (or import report) as JSON on stdout
${teacherClientFlags.help}`,
  async run(argv) {
    const { values } = parseFlags(argv, {
      dataset: { type: "string" },
      split: { type: "string" },
      limit: { type: "string" },
      concurrency: { type: "string" },
      n: { type: "string" },
      temperature: { type: "string" },
      "max-tokens": { type: "string" },
      batch: { type: "boolean" },
      "poll-seconds": { type: "string" },
      resume: { type: "string" },
      "retry-failed": { type: "string" },
      "import-palm": { type: "boolean" },
      template: { type: "string" },
      format: { type: "string" },
      shots: { type: "string" },
      mode: { type: "string" },
      "dry-run": { type: "boolean" },
      "max-cost": { type: "string" },
      structured: { type: "boolean" },
      export: { type: "string" },
      "rationale-part": { type: "string" },
      db: { type: "string", default: DEFAULT_DB_PATH },
      json: { type: "boolean" },
      ...teacherClientFlags.options,
    });
    const runtime = openTeacherRuntime({
      dbPath: values.db,
      client: teacherClientOptions(values),
      batchPollMs: numberFlag(values["poll-seconds"], "poll-seconds", 30) * 1000,
    });
    try {
      if (values["import-palm"]) {
        const report = await importPalmRationales(runtime.teacher.store, requiredFlag(values.dataset, "dataset"), requiredFlag(values.split, "split"));
        if (values.json) console.log(JSON.stringify(report));
        else console.error(`imported ${report.inserted} PaLM rationales for ${report.dataset}/${report.split} (${report.duplicates} already stored, ${report.unanswered} unanswered, ${report.items} items)`);
        return 0;
      }
      if (values.export) {
        const report = await exportForTraining(runtime, values.export, {
          dataset: requiredFlag(values.dataset, "dataset"),
          split: values.split,
          model: values["teacher-model"],
          part: rationalePartFlag(values["rationale-part"]),
        });
        if (values.json) console.log(JSON.stringify(report));
        else console.error(`wrote ${report.written} rationales (${report.part}) to ${values.export}; ${report.withoutPart} stored answers have no ${report.part} part`);
        return 0;
      }
      const retry = values["retry-failed"];
      const maxCostUsd = values["max-cost"] === undefined ? undefined : positive(numberFlag(values["max-cost"], "max-cost"), "max-cost");
      const request = () => ({
        dataset: requiredFlag(values.dataset, "dataset"),
        split: requiredFlag(values.split, "split"),
        limit: optionalInt(values.limit, "limit", 1),
        concurrency: optionalInt(values.concurrency, "concurrency", 1),
        n: optionalInt(values.n, "n", 1),
        maxTokens: optionalInt(values["max-tokens"], "max-tokens", 1),
        temperature: values.temperature === undefined ? undefined : numberFlag(values.temperature, "temperature"),
        batch: values.batch,
        maxCostUsd,
        prompt: promptOptions(values),
        structured: values.structured,
      });
      if (values["dry-run"]) {
        const estimate = await runtime.jobs.estimate(request());
        if (values.json) console.log(JSON.stringify(estimate));
        else console.error(estimateLine(estimate));
        return 0;
      }
      const job = retry
        ? runtime.jobs.retryFailed(retry)
        : values.resume
        ? maxCostUsd !== undefined
          ? runtime.jobs.resumeWithBudget(values.resume, maxCostUsd)
          : resume(runtime, values.resume)
        : await runtime.jobs.create(request());
      const final = await follow(runtime, job);
      if (values.json) console.log(JSON.stringify(final));
      console.error(summary(final));
      if (final.stopped === "max_cost") {
        console.error(`stopped at the budget ($${final.params.maxCostUsd} spent: $${final.costUsd.toFixed(4)}); continue with  bun src/cli.ts rationales --resume ${final.id} --max-cost HIGHER --db ${values.db}`);
      } else if (final.status === "running") console.error(`interrupted: resume with  bun src/cli.ts rationales --resume ${final.id} --db ${values.db}`);
      return (final.status === "done" && final.failed === 0) || final.stopped === "max_cost" ? 0 : 1;
    } finally {
      await runtime.close();
    }
  },
};

function positive(value: number, name: string): number {
  if (!(value > 0)) throw new UserError(`--${name} must be > 0, got ${value}`);
  return value;
}

/** --template/--format/--shots/--mode as the job's prompt options (a template file travels as its content). */
function promptOptions(values: { template?: string; format?: string; shots?: string; mode?: string }): PromptOptions | undefined {
  const raw = {
    template: values.template === undefined ? undefined : (BUILTIN_TEMPLATES as readonly string[]).includes(values.template) ? values.template : exemplarFileContent(values.template),
    format: values.format,
    shots: optionalInt(values.shots, "shots", 0),
    mode: values.mode,
  };
  const defined = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined));
  if (Object.keys(defined).length === 0) return undefined;
  const parsed = v.safeParse(PromptOptionsSchema, defined);
  if (!parsed.success) throw new UserError(`--${v.getDotPath(parsed.issues[0])?.split(".")[0] ?? "template"}: ${parsed.issues[0].message}`);
  return parsed.output;
}

function estimateLine(e: JobEstimate): string {
  const cost = e.costUsd === null ? `cost unknown (no price for ${e.model})` : `≈ $${e.costUsd.toFixed(4)}${e.mode === "batch" ? " at the batch rate" : ""}`;
  return (
    `dry run: ${e.dataset}/${e.split} ${e.items} items (${e.cached} already stored), ${e.samples} samples to request with ${e.model} ` +
    `(template ${e.template}); ≈ ${e.promptTokens} prompt + ≤ ${e.completionTokens} completion tokens; ${cost}`
  );
}

function rationalePartFlag(value: string | undefined): RationalePart {
  if (value === undefined) return "explanation";
  if ((RATIONALE_PARTS as readonly string[]).includes(value)) return value as RationalePart;
  throw new UserError(`--rationale-part must be one of ${RATIONALE_PARTS.join(", ")}, got "${value}"`, 400);
}

/** Sample 0 of every stored item of the dataset (and split, model), its `part` as the rationale, as JSON lines. */
async function exportForTraining(
  runtime: TeacherRuntime,
  path: string,
  options: { dataset: string; split?: string; model?: string; part: RationalePart },
): Promise<{ written: number; withoutPart: number; part: RationalePart }> {
  const writer = Bun.file(path).writer();
  let written = 0;
  let withoutPart = 0;
  try {
    for await (const record of runtime.teacher.store.list({ dataset: options.dataset, split: options.split, model: options.model })) {
      if (record.sampleIndex !== 0 || record.itemId === null) continue;
      const rationale = rationaleText(record, options.part);
      if (rationale === null) {
        withoutPart++;
        continue;
      }
      const { itemId, split, label, agrees, model, template } = record;
      writer.write(JSON.stringify({ id: itemId, split, rationale, label, agrees, model, template, part: options.part }) + "\n");
      written++;
    }
  } finally {
    await writer.end();
  }
  return { written, withoutPart, part: options.part };
}

function optionalInt(value: string | undefined, name: string, min: number): number | undefined {
  return value === undefined ? undefined : intFlag(value, name, undefined, min);
}

function resume(runtime: TeacherRuntime, id: string): JobSnapshot {
  const job = runtime.jobs.require(id);
  if (job.status !== "running") return job;
  if (!runtime.jobs.start(id)) throw new UserError(`job ${id} is being run by another live process (serve?)`, 409);
  return job;
}

/** Prints progress until the job stops, or until Ctrl-C (the job then stays resumable). */
async function follow(runtime: TeacherRuntime, job: JobSnapshot): Promise<JobSnapshot> {
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const progress = progressPrinter(job);
  let last = job;
  try {
    for await (const snap of runtime.jobs.watch(job.id, stop.signal, { minIntervalMs: 500 })) {
      last = snap;
      progress(snap);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  if (stop.signal.aborted) await runtime.jobs.close();
  else await runtime.jobs.settled(job.id);
  progress(last, true);
  return runtime.jobs.require(job.id);
}

/** One line rewritten in place on a terminal; a line every few seconds otherwise (logs, CI). */
function progressPrinter(start: JobSnapshot): (snap: JobSnapshot, final?: boolean) => void {
  const tty = process.stderr.isTTY;
  const startedAt = Date.now();
  const settledAtStart = start.done + start.failed;
  let printedAt = 0;
  return (snap, final = false) => {
    const now = Date.now();
    if (!tty && !final && now - printedAt < 5_000) return;
    printedAt = now;
    const line = progressLine(snap, (snap.done + snap.failed - settledAtStart) / Math.max(1, now - startedAt));
    if (tty) process.stderr.write(`\r\x1b[2K${line}${final ? "\n" : ""}`);
    else console.error(line);
  };
}

export function progressLine(snap: JobSnapshot, itemsPerMs: number): string {
  const eta = snap.pending > 0 && itemsPerMs > 0 ? formatDuration(snap.pending / itemsPerMs) : "-";
  return (
    `${snap.dataset}/${snap.split} ${snap.done + snap.failed}/${snap.total}` +
    `  done ${snap.done} (cached ${snap.cached})  failed ${snap.failed}${failureKinds(snap)}` +
    `  tokens ${snap.tokens}  cost $${snap.costUsd.toFixed(4)}  ETA ${eta}`
  );
}

/** " (no_answer 3, ambiguous 1; parse failures 4.0%)" — what kind of failures, so a bad template shows at once. */
function failureKinds(snap: JobSnapshot): string {
  const kinds = Object.entries(snap.failuresByKind ?? {}).map(([kind, n]) => `${kind} ${n}`);
  if (kinds.length === 0) return "";
  return ` (${kinds.join(", ")}; parse failures ${(100 * snap.parseFailureRate).toFixed(1)}%)`;
}

function summary(snap: JobSnapshot): string {
  const took = snap.finishedAt ? `  in ${formatDuration(snap.finishedAt - snap.createdAt)}` : "";
  return (
    `job ${snap.id} ${snap.status}: ${snap.done}/${snap.total} done (${snap.cached} from the store), ${snap.failed} failed${failureKinds(snap)}, ` +
    `${snap.pending} pending; ${snap.tokens} tokens, $${snap.costUsd.toFixed(4)}${took}`
  );
}

function formatDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
