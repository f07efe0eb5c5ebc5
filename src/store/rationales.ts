/**
 * The rationale store: every teacher rationale ever paid for, keyed so that the same question asked of the same
 * model with the same prompt template and generation parameters is never paid for twice. Failures (truncated,
 * filtered, given up) live in their own table and are never served as rationales.
 *
 * Key = SHA-256 of the canonical JSON of (item identity, model, template version, params, sample index), where item
 * identity is dataset + id when the item has one, else the normalised question text and choices.
 */
import type { Database } from "bun:sqlite";
import { createHash } from "node:crypto";
import * as v from "valibot";
import { getDataset, type AnswerKind } from "../data/registry.ts";
import type { Choice } from "../data/types.ts";
import { agreesWithGold as agreesWith, answerFormatOf, parseCompletion } from "../teacher/parse.ts";
import { addColumn, registerMigration, registerSchema } from "./db.ts";

registerSchema(
  "rationales",
  `CREATE TABLE IF NOT EXISTS rationales (
    key               TEXT PRIMARY KEY,
    dataset           TEXT,
    split             TEXT,
    item_id           TEXT,
    question          TEXT NOT NULL,
    choices           TEXT,
    answer            TEXT,
    sample_index      INTEGER NOT NULL,
    model             TEXT NOT NULL,
    answered_by       TEXT,
    template          TEXT NOT NULL,
    params            TEXT NOT NULL,
    rationale         TEXT NOT NULL,
    label             TEXT,
    agrees            INTEGER,
    raw_completion    TEXT NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    latency_ms        REAL,
    cost_usd          REAL,
    source            TEXT NOT NULL CHECK (source IN ('teacher', 'import')),
    created_at        INTEGER NOT NULL,
    reasoning         TEXT,
    reasoning_tokens  INTEGER
  );
  CREATE INDEX IF NOT EXISTS rationales_by_split ON rationales (dataset, split, model, item_id, sample_index);
  CREATE TABLE IF NOT EXISTS rationale_failures (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key             TEXT NOT NULL,
    dataset         TEXT,
    split           TEXT,
    item_id         TEXT,
    question        TEXT NOT NULL,
    sample_index    INTEGER NOT NULL,
    model           TEXT NOT NULL,
    template        TEXT NOT NULL,
    params          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    upstream_status INTEGER,
    message         TEXT NOT NULL,
    raw_completion  TEXT,
    attempts        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    reasoning       TEXT
  );
  CREATE INDEX IF NOT EXISTS rationale_failures_by_key ON rationale_failures (key);`,
);

// databases made before provenance recorded the model that actually answered
registerMigration({ name: "rationales-answered-by", order: 0, apply: (db) => addColumn(db, "rationales", "answered_by", "TEXT") });

/** Whether a record was paid for from a teacher or imported (PaLM files, JSONL exports). */
export type RecordOrigin = "teacher" | "import";

/** What identifies a question: dataset + id when known, otherwise its text and choices. */
export interface ItemIdentity {
  question: string;
  choices?: Choice[] | null;
  dataset?: string | null;
  id?: string | null;
}

export interface KeyParts {
  item: ItemIdentity;
  model: string;
  template: string;
  /** Generation parameters that change the answer (temperature, max tokens …), not n. */
  params: Record<string, unknown>;
  sampleIndex: number;
}

function normaliseText(text: string): string {
  return text.normalize("NFKC").trim().replace(/\s+/g, " ");
}

/** JSON with object keys sorted, so equal values always hash the same. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]))
      : v,
  );
}

function identityOf(item: ItemIdentity): unknown {
  if (item.dataset && item.id) return { dataset: item.dataset, id: item.id };
  return {
    question: normaliseText(item.question),
    choices: (item.choices ?? []).map((c) => [c.label.toUpperCase(), normaliseText(c.text)]),
  };
}

export function rationaleKey(parts: KeyParts): string {
  const material = canonicalJson({
    item: identityOf(parts.item),
    model: parts.model,
    template: parts.template,
    params: parts.params,
    sample: parts.sampleIndex,
  });
  return createHash("sha256").update(material).digest("hex");
}

const ChoiceSchema = v.object({ label: v.string(), text: v.string() });
const Count = v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0)));

/** One stored rationale, as exported to and imported from JSONL (the key is recomputed on import). */
export const RationaleRecordSchema = v.object({
  key: v.optional(v.string()),
  dataset: v.nullable(v.string()),
  split: v.nullable(v.string()),
  itemId: v.nullable(v.string()),
  question: v.pipe(v.string(), v.minLength(1)),
  choices: v.nullable(v.array(ChoiceSchema)),
  answer: v.nullable(v.string()),
  sampleIndex: v.pipe(v.number(), v.integer(), v.minValue(0)),
  model: v.pipe(v.string(), v.minLength(1)),
  /** The model the API says answered (a dated snapshot, another deployment …); null when unknown (imports). */
  answeredBy: v.optional(v.nullable(v.string()), null),
  template: v.pipe(v.string(), v.minLength(1)),
  params: v.record(v.string(), v.unknown()),
  /** The visible explanation (markdown stripped). */
  rationale: v.string(),
  /** A reasoning model's trace (reasoning_content or <think> blocks), kept apart from the explanation. */
  reasoning: v.optional(v.nullable(v.string()), null),
  label: v.nullable(v.string()),
  agrees: v.nullable(v.boolean()),
  rawCompletion: v.string(),
  promptTokens: Count,
  completionTokens: Count,
  /** Of completionTokens, those the API reports as reasoning (usage.completion_tokens_details.reasoning_tokens). */
  reasoningTokens: v.optional(Count, null),
  latencyMs: v.nullable(v.pipe(v.number(), v.minValue(0))),
  costUsd: v.nullable(v.pipe(v.number(), v.minValue(0))),
  source: v.picklist(["teacher", "import"]),
  createdAt: v.pipe(v.number(), v.integer()),
});

export type RationaleRecord = Omit<v.InferOutput<typeof RationaleRecordSchema>, "key"> & { key: string };

/** Which part of a stored answer training uses: the visible explanation, the reasoning trace, or both. */
export const RATIONALE_PARTS = ["explanation", "reasoning", "both"] as const;
export type RationalePart = (typeof RATIONALE_PARTS)[number];

/**
 * The text to train on from a stored answer, per `part`; null when the answer has no such part (a non-reasoning
 * teacher has no trace; a reasoning model may show only its label). "both" is the trace, then the explanation.
 */
export function rationaleText(record: Pick<RationaleRecord, "rationale" | "reasoning">, part: RationalePart = "explanation"): string | null {
  const explanation = record.rationale.trim() || null;
  const reasoning = record.reasoning?.trim() || null;
  if (part === "explanation") return explanation;
  if (part === "reasoning") return reasoning;
  return [reasoning, explanation].filter(Boolean).join("\n\n") || null;
}
export type NewRationale = Omit<RationaleRecord, "key" | "createdAt" | "reasoning" | "reasoningTokens" | "answeredBy"> & {
  createdAt?: number;
  reasoning?: string | null;
  reasoningTokens?: number | null;
  answeredBy?: string | null;
};

/** One teacher's stored answers for a dataset under one template version, for choosing a training source. */
export interface TeacherTemplate {
  /** The model requested (what the cache key names). */
  model: string;
  template: string;
  rationales: number;
  agreeing: number;
  /** Newest answer of this (model, template), epoch ms: the default template is the newest one. */
  newest: number;
  /** Models the API said answered (dated snapshots …), when recorded. */
  answeredBy: string[];
}

export interface FailureRecord {
  key: string;
  dataset: string | null;
  split: string | null;
  itemId: string | null;
  question: string;
  sampleIndex: number;
  model: string;
  template: string;
  params: Record<string, unknown>;
  kind: string;
  upstreamStatus: number | null;
  message: string;
  rawCompletion: string | null;
  /** The reasoning trace that came with the refused answer, if any. */
  reasoning?: string | null;
  attempts: number;
  createdAt: number;
}

export type ListFilter = {
  dataset?: string;
  split?: string;
  model?: string;
};

export interface BrowseFilter {
  dataset?: string;
  teacher?: string;
  /** true: agrees with gold; false: disagrees; null: no gold to compare with. */
  agrees?: boolean | null;
}

export interface SplitSummary {
  dataset: string | null;
  split: string | null;
  model: string;
  rationales: number;
  /** Rationales whose label matched the gold answer. */
  agreeing: number;
  /** Null when no rationale of the group has a cost estimate (imports, unpriced models). */
  costUsd: number | null;
}

export interface ImportReport {
  inserted: number;
  /** Valid lines whose key was already stored (re-import is idempotent). */
  duplicates: number;
  errors: Array<{ line: number; message: string }>;
}

interface RationaleRow {
  key: string;
  dataset: string | null;
  split: string | null;
  item_id: string | null;
  question: string;
  choices: string | null;
  answer: string | null;
  sample_index: number;
  model: string;
  answered_by: string | null;
  template: string;
  params: string;
  rationale: string;
  reasoning: string | null;
  label: string | null;
  agrees: number | null;
  raw_completion: string;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  reasoning_tokens: number | null;
  latency_ms: number | null;
  cost_usd: number | null;
  source: RecordOrigin;
  created_at: number;
}

function fromRow(row: RationaleRow): RationaleRecord {
  return {
    key: row.key,
    dataset: row.dataset,
    split: row.split,
    itemId: row.item_id,
    question: row.question,
    choices: row.choices === null ? null : (JSON.parse(row.choices) as Choice[]),
    answer: row.answer,
    sampleIndex: row.sample_index,
    model: row.model,
    answeredBy: row.answered_by,
    template: row.template,
    params: JSON.parse(row.params) as Record<string, unknown>,
    rationale: row.rationale,
    reasoning: row.reasoning,
    label: row.label,
    agrees: row.agrees === null ? null : row.agrees === 1,
    rawCompletion: row.raw_completion,
    promptTokens: row.prompt_tokens,
    completionTokens: row.completion_tokens,
    reasoningTokens: row.reasoning_tokens,
    latencyMs: row.latency_ms,
    costUsd: row.cost_usd,
    source: row.source,
    createdAt: row.created_at,
  };
}

function toRow(r: RationaleRecord): RationaleRow {
  return {
    key: r.key,
    dataset: r.dataset,
    split: r.split,
    item_id: r.itemId,
    question: r.question,
    choices: r.choices === null ? null : JSON.stringify(r.choices),
    answer: r.answer,
    sample_index: r.sampleIndex,
    model: r.model,
    answered_by: r.answeredBy ?? null,
    template: r.template,
    params: JSON.stringify(r.params),
    rationale: r.rationale,
    reasoning: r.reasoning ?? null,
    label: r.label,
    agrees: r.agrees === null ? null : Number(r.agrees),
    raw_completion: r.rawCompletion,
    prompt_tokens: r.promptTokens,
    completion_tokens: r.completionTokens,
    reasoning_tokens: r.reasoningTokens ?? null,
    latency_ms: r.latencyMs,
    cost_usd: r.costUsd,
    source: r.source,
    created_at: r.createdAt,
  };
}

const COLUMNS = Object.keys(toRow({ choices: null, agrees: null, params: {} } as unknown as RationaleRecord));
const INSERT_SQL = `INSERT OR IGNORE INTO rationales (${COLUMNS.join(", ")}) VALUES (${COLUMNS.map((c) => "$" + c).join(", ")})`;

/** The key a record is stored under, from its own fields. */
export function keyOfRecord(r: Pick<RationaleRecord, "question" | "choices" | "dataset" | "itemId" | "model" | "template" | "params" | "sampleIndex">): string {
  return rationaleKey({
    item: { question: r.question, choices: r.choices, dataset: r.dataset, id: r.itemId },
    model: r.model,
    template: r.template,
    params: r.params,
    sampleIndex: r.sampleIndex,
  });
}

/** WHERE clause for a filter; absent fields match everything. */
function whereOf(filter: Record<string, string | undefined>): { sql: string; args: Record<string, string> } {
  const clauses: string[] = [];
  const args: Record<string, string> = {};
  for (const [field, value] of Object.entries(filter)) {
    if (value === undefined) continue;
    clauses.push(`${field} = $${field}`);
    args[field] = value;
  }
  return { sql: clauses.length ? clauses.join(" AND ") : "1", args };
}

const PAGE = 500;

export class RationaleStore {
  constructor(readonly db: Database) {}

  get(key: string): RationaleRecord | null {
    const row = this.db.query<RationaleRow, [string]>("SELECT * FROM rationales WHERE key = ?").get(key);
    return row ? fromRow(row) : null;
  }

  /** Stores a rationale under the key of its own fields; returns the key and whether it was new. */
  put(rationale: NewRationale): { key: string; inserted: boolean } {
    const record: RationaleRecord = {
      ...rationale,
      reasoning: rationale.reasoning ?? null,
      reasoningTokens: rationale.reasoningTokens ?? null,
      answeredBy: rationale.answeredBy ?? null,
      key: keyOfRecord(rationale),
      createdAt: rationale.createdAt ?? Date.now(),
    };
    return { key: record.key, inserted: this.putKeyed(record) };
  }

  /**
   * Stores a record whose key the caller computed from the same fields (`rationaleKey`, as TeacherService's plan
   * does) without hashing it again; true when it was new.
   */
  putKeyed(record: RationaleRecord): boolean {
    return this.db.query(INSERT_SQL).run(toRow(record) as never).changes === 1;
  }

  /** Several rationales in one transaction (all or none). */
  putMany(rationales: NewRationale[]): number {
    let inserted = 0;
    this.db.transaction(() => {
      for (const r of rationales) inserted += Number(this.put(r).inserted);
    })();
    return inserted;
  }

  recordFailure(failure: Omit<FailureRecord, "createdAt"> & { createdAt?: number }): void {
    this.db
      .query(
        `INSERT INTO rationale_failures (key, dataset, split, item_id, question, sample_index, model, template, params,
           kind, upstream_status, message, raw_completion, reasoning, attempts, created_at)
         VALUES ($key, $dataset, $split, $itemId, $question, $sampleIndex, $model, $template, $params,
           $kind, $upstreamStatus, $message, $rawCompletion, $reasoning, $attempts, $createdAt)`,
      )
      .run({ ...failure, reasoning: failure.reasoning ?? null, params: JSON.stringify(failure.params), createdAt: failure.createdAt ?? Date.now() } as never);
  }

  failures(key?: string): FailureRecord[] {
    return this.failuresWhere(key === undefined ? {} : { key }, 0, -1);
  }

  /** Recorded failures matching the filter (and kind), oldest first, a page at a time: raw answers to inspect. */
  async *listFailures(filter: ListFilter & { kind?: string } = {}): AsyncGenerator<FailureRecord> {
    for (let after = 0; ; ) {
      const page = this.failuresWhere(filter, after, PAGE);
      for (const failure of page) yield failure;
      if (page.length < PAGE) return;
      after = page[page.length - 1].id;
    }
  }

  private failuresWhere(filter: Record<string, string | undefined>, after: number, limit: number): Array<FailureRecord & { id: number }> {
    const where = whereOf(filter);
    const sql = `SELECT id, key, dataset, split, item_id AS itemId, question, sample_index AS sampleIndex, model, template,
        params, kind, upstream_status AS upstreamStatus, message, raw_completion AS rawCompletion, reasoning, attempts,
        created_at AS createdAt
      FROM rationale_failures WHERE ${where.sql} AND id > $after ORDER BY id LIMIT ${limit}`;
    const rows = this.db.query<FailureRecord & { id: number; params: string }, Record<string, string | number>>(sql).all({ ...where.args, after });
    return rows.map((row) => ({ ...row, params: JSON.parse(row.params) as Record<string, unknown> }));
  }

  /**
   * Rationales matching the filter, in (item, sample) order, read a page at a time so a caller can stream tens of
   * thousands without holding them all (and without a statement left open across awaits).
   */
  async *list(filter: ListFilter = {}): AsyncGenerator<RationaleRecord> {
    const where = whereOf(filter);
    const query = this.db.query<RationaleRow & { rid: number }, Record<string, string | number>>(
      `SELECT rowid AS rid, * FROM rationales WHERE ${where.sql} AND rowid > $after ORDER BY rowid LIMIT ${PAGE}`,
    );
    let after = 0;
    for (;;) {
      const rows = query.all({ ...where.args, after });
      for (const row of rows) yield fromRow(row);
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1].rid;
    }
  }

  /** Every stored rationale of one item under one model (all templates and samples). */
  forItem(dataset: string, itemId: string, model?: string): RationaleRecord[] {
    const where = whereOf({ dataset, item_id: itemId, model });
    return this.db
      .query<RationaleRow, Record<string, string>>(`SELECT * FROM rationales WHERE ${where.sql} ORDER BY sample_index, rowid`)
      .all(where.args)
      .map(fromRow);
  }

  count(filter: ListFilter = {}): number {
    const where = whereOf(filter);
    return this.db.query<{ n: number }, Record<string, string>>(`SELECT COUNT(*) AS n FROM rationales WHERE ${where.sql}`).get(where.args)!.n;
  }

  countFailures(filter: ListFilter = {}): number {
    const where = whereOf(filter);
    return this.db
      .query<{ n: number }, Record<string, string>>(`SELECT COUNT(*) AS n FROM rationale_failures WHERE ${where.sql}`)
      .get(where.args)!.n;
  }

  /** Counts per (dataset, split, model), for dashboards and `rationales --stats`. */
  summary(): Array<SplitSummary> {
    return this.db
      .query<SplitSummary, []>(
        `SELECT dataset, split, model, COUNT(*) AS rationales, COALESCE(SUM(agrees), 0) AS agreeing,
           SUM(cost_usd) AS costUsd
         FROM rationales GROUP BY dataset, split, model ORDER BY dataset, split, model`,
      )
      .all();
  }

  /**
   * Per (model, template) of a dataset: counts and the newest answer's time, newest first. A teacher is found by
   * the model requested or the model that answered (`teacher` matches either).
   */
  teacherTemplates(dataset: string, teacher?: string): TeacherTemplate[] {
    const rows = this.db
      .query<Omit<TeacherTemplate, "answeredBy"> & { answeredBy: string | null }, Record<string, string>>(
        `SELECT model, template, COUNT(*) AS rationales, COALESCE(SUM(agrees), 0) AS agreeing, MAX(created_at) AS newest,
           GROUP_CONCAT(DISTINCT answered_by) AS answeredBy
         FROM rationales WHERE dataset = $dataset ${teacher === undefined ? "" : "AND (model = $teacher OR answered_by = $teacher)"}
         GROUP BY model, template ORDER BY newest DESC, model, template`,
      )
      .all(teacher === undefined ? { dataset } : { dataset, teacher });
    return rows.map((r) => ({ ...r, answeredBy: r.answeredBy ? r.answeredBy.split(",") : [] }));
  }

  /** Every stored answer of `teacher` (requested or answering model) for a dataset under one template, in item/sample order. */
  teacherAnswers(dataset: string, teacher: string, template: string): RationaleRecord[] {
    return this.db
      .query<RationaleRow, Record<string, string>>(
        `SELECT * FROM rationales WHERE dataset = $dataset AND template = $template AND (model = $teacher OR answered_by = $teacher)
         ORDER BY item_id, sample_index, created_at`,
      )
      .all({ dataset, teacher, template })
      .map(fromRow);
  }

  /**
   * One page of rationales for people (the dashboard's browser): newest first, filtered by dataset, teacher (the
   * model requested or the one that answered) and agreement with gold; with the total matching.
   */
  browse(filter: BrowseFilter = {}, limit = 50, offset = 0): { total: number; rows: RationaleRecord[] } {
    const clauses: string[] = [];
    const args: Record<string, string | number> = {};
    if (filter.dataset !== undefined) {
      clauses.push("dataset = $dataset");
      args.dataset = filter.dataset;
    }
    if (filter.teacher !== undefined) {
      clauses.push("(model = $teacher OR answered_by = $teacher)");
      args.teacher = filter.teacher;
    }
    if (filter.agrees !== undefined) clauses.push(filter.agrees === null ? "agrees IS NULL" : `agrees = ${filter.agrees ? 1 : 0}`);
    const where = clauses.length ? clauses.join(" AND ") : "1";
    const total = this.db.query<{ n: number }, Record<string, string | number>>(`SELECT COUNT(*) AS n FROM rationales WHERE ${where}`).get(args)!.n;
    const rows = this.db
      .query<RationaleRow, Record<string, string | number>>(`SELECT * FROM rationales WHERE ${where} ORDER BY created_at DESC, rowid DESC LIMIT $limit OFFSET $offset`)
      .all({ ...args, limit, offset })
      .map(fromRow);
    return { total, rows };
  }

  /** Writes the matching rationales as JSON lines; returns how many. */
  async exportJsonl(path: string, filter: ListFilter = {}): Promise<number> {
    const writer = Bun.file(path).writer();
    let n = 0;
    try {
      for await (const record of this.list(filter)) {
        writer.write(JSON.stringify(record) + "\n");
        n++;
      }
    } finally {
      await writer.end();
    }
    return n;
  }

  /**
   * Reads JSON lines written by exportJsonl (or by hand): every line is validated; bad lines are reported with their
   * 1-based line number and skipped, the good ones are inserted in one transaction as source "import". Keys are
   * recomputed from the fields, so re-importing the same file inserts nothing.
   */
  importJsonl(text: string): ImportReport {
    const report: ImportReport = { inserted: 0, duplicates: 0, errors: [] };
    const good: NewRationale[] = [];
    text.split("\n").forEach((line, i) => {
      if (line.trim() === "") return;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch (err) {
        report.errors.push({ line: i + 1, message: `not JSON: ${(err as Error).message}` });
        return;
      }
      const parsed = v.safeParse(RationaleRecordSchema, json);
      if (!parsed.success) {
        const issue = parsed.issues[0];
        report.errors.push({ line: i + 1, message: `${v.getDotPath(issue) ?? "(line)"}: ${issue.message}` });
        return;
      }
      const { key: _ignored, ...record } = parsed.output;
      good.push({ ...record, source: "import" });
    });
    report.inserted = this.putMany(good);
    report.duplicates = good.length - report.inserted;
    return report;
  }
}

registerMigration({
  name: "rationales-reasoning-columns",
  order: 0,
  apply(db) {
    addColumn(db, "rationales", "reasoning", "TEXT");
    addColumn(db, "rationales", "reasoning_tokens", "INTEGER");
    addColumn(db, "rationale_failures", "reasoning", "TEXT");
  },
});

registerMigration({ name: "rationales-answer-validity", order: 10, apply: (db) => void revalidateTeacherAnswers(db) });

/**
 * Databases written before answers were validated hold teacher rows that are no answer at all (empty, no label,
 * a refusal, two labels) and rationales stored damaged (a `<think>` block, a dangling "Therefore,"). Every teacher
 * row is read again with today's parser: an invalid one moves to rationale_failures (raw text kept) and the job
 * items it settled become failed, so `retry-failed` asks again; a valid one gets today's rationale and label.
 * Imported rows are left as their files gave them.
 */
export function revalidateTeacherAnswers(db: Database): { movedOut: number; repaired: number } {
  const page = db.query<RationaleRow & { rid: number }, [number]>(
    `SELECT rowid AS rid, * FROM rationales WHERE source = 'teacher' AND rowid > ? ORDER BY rowid LIMIT ${PAGE}`,
  );
  const hasJobs = db.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'job_items'").get()!.n > 0;
  const store = new RationaleStore(db);
  const kinds = new Map<string, AnswerKind | null>();
  const kindOf = (dataset: string | null): AnswerKind | null => {
    if (dataset === null) return null;
    if (!kinds.has(dataset)) {
      let kind: AnswerKind | null = null;
      try {
        kind = getDataset(dataset).answerKind;
      } catch {
        // a dataset this process does not know: go by the gold answer
      }
      kinds.set(dataset, kind);
    }
    return kinds.get(dataset)!;
  };
  let movedOut = 0;
  let repaired = 0;
  // a page at a time (a big store does not fit in memory at once); rows moved out or rewritten stay behind `after`
  for (let after = 0, rows = page.all(0); rows.length > 0; after = rows[rows.length - 1].rid, rows = page.all(after)) {
    for (const row of rows) {
      const record = fromRow(row);
      const outcome = revalidate(db, store, record, kindOf(record.dataset), hasJobs);
      if (outcome === "moved") movedOut++;
      if (outcome === "repaired") repaired++;
    }
  }
  return { movedOut, repaired };
}

function revalidate(
  db: Database,
  store: RationaleStore,
  record: RationaleRecord,
  kind: AnswerKind | null,
  hasJobs: boolean,
): "moved" | "repaired" | "kept" {
  const format = answerFormatOf({ choices: record.choices ?? undefined, answer: record.answer ?? undefined }, kind);
  const parsed = parseCompletion(record.rawCompletion, format, record.choices ?? []);
  const reasoning = [record.reasoning, parsed.reasoning].filter(Boolean).join("\n\n") || null;
  const failure = parsed.failure ?? (parsed.label === null ? { reason: "no_answer", detail: "no readable final answer" } : null);
  if (failure && !(failure.reason === "no_rationale" && reasoning)) {
    store.recordFailure({
      key: record.key,
      dataset: record.dataset,
      split: record.split,
      itemId: record.itemId,
      question: record.question,
      sampleIndex: record.sampleIndex,
      model: record.model,
      template: record.template,
      params: record.params,
      kind: failure.reason,
      upstreamStatus: null,
      message: `stored before answers were validated, moved out: ${failure.detail}`,
      rawCompletion: record.rawCompletion,
      reasoning,
      attempts: 1,
      createdAt: record.createdAt,
    });
    db.query("DELETE FROM rationales WHERE key = ?").run(record.key);
    if (hasJobs && record.dataset && record.itemId) {
      db.query(
        `UPDATE job_items SET state = 'failed', error_kind = ?1, error = ?2
         WHERE state = 'done' AND json_extract(item, '$.dataset') = ?3 AND json_extract(item, '$.id') = ?4
           AND job_id IN (SELECT id FROM jobs WHERE json_extract(params, '$.model') IS NULL OR json_extract(params, '$.model') = ?5)`,
      ).run(failure.reason, `teacher answer invalid (${failure.reason}): ${failure.detail}`, record.dataset, record.itemId, record.model);
    }
    return "moved";
  }
  if (parsed.rationale !== record.rationale || parsed.label !== record.label || reasoning !== record.reasoning) {
    const gold = record.answer ?? undefined;
    const agrees = gold === undefined || gold.trim() === "" ? null : agreesWith(parsed.label, gold, format);
    db.query("UPDATE rationales SET rationale = ?, label = ?, reasoning = ?, agrees = ? WHERE key = ?").run(
      parsed.rationale,
      parsed.label,
      reasoning,
      agrees === null ? null : Number(agrees),
      record.key,
    );
    return "repaired";
  }
  return "kept";
}
