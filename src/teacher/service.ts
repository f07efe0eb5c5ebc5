/**
 * TeacherService: the one way to get chain-of-thought rationales from the teacher. A stored answer is never requested
 * twice (cache key = item identity + model + template version + generation params + sample index), identical requests
 * in flight at the same time share one teacher call, and failures are recorded but never stored as rationales.
 *
 * FIRST VERSION: types and signatures only, so the HTTP/jobs layer can build on them; the body follows.
 */
import type { Database } from "bun:sqlite";
import type { Choice } from "../data/types.ts";

/** What the teacher is asked about: a dataset item, or a free question (identity = normalised text + choices). */
export interface TeacherItem {
  question: string;
  choices?: Choice[];
  /** Gold answer ("B", "42"); without it `agrees` is null. */
  answer?: string;
  dataset?: string;
  split?: string;
  id?: string;
}

export interface GenerationParams {
  model?: string;
  temperature?: number;
  maxTokens?: number;
  /** Number of samples (indices 0..n-1); each is cached on its own. */
  n?: number;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

export interface RationaleSample {
  rationale: string;
  /** Normalised label: "A".."E" for multiple choice, a canonical number string for math; null when unparseable. */
  label: string | null;
  /** Label equals the gold answer; null when the item has no gold answer. */
  agrees: boolean | null;
  /** True when served from the store without a teacher call. */
  fromStore: boolean;
  /** The cache key (hex SHA-256). */
  key: string;
  sampleIndex: number;
  model: string;
  template: string;
  usage: TokenUsage | null;
  costUsd: number | null;
}

export interface RationaleRequest {
  item: TeacherItem;
  params?: GenerationParams;
}

export interface RationaleResult {
  samples: RationaleSample[];
}

/** Why a teacher call failed; `status` is what an HTTP layer should answer. */
export type TeacherFailureKind =
  | "rate_limited" // 429 after retries exhausted
  | "timeout"
  | "connection"
  | "upstream" // 5xx after retries exhausted, or a 4xx the teacher API returned
  | "bad_response" // malformed JSON / missing choices after retries
  | "truncated" // finish_reason "length"
  | "content_filter"; // finish_reason "content_filter"

export class TeacherError extends Error {
  constructor(
    message: string,
    readonly kind: TeacherFailureKind,
    /** 503 for rate limits/timeouts/connection (try later), 502 for bad upstream answers. */
    readonly status: 502 | 503 | 504,
    readonly attempts: number,
    /** The teacher API's own HTTP status, when it answered. */
    readonly upstreamStatus?: number,
  ) {
    super(message);
    this.name = "TeacherError";
  }
}

export interface TeacherDefaults {
  model: string;
  temperature: number;
  maxTokens: number;
  n: number;
}

export interface TeacherServiceOptions {
  db: Database;
  /** A TeacherClient (src/teacher/client.ts); built from env (OPENAI_BASE_URL, OPENAI_API_KEY, TEACHER_MODEL) if absent. */
  client?: unknown;
  defaults?: Partial<TeacherDefaults>;
}

export class TeacherService {
  constructor(readonly options: TeacherServiceOptions) {}

  /** Samples 0..n-1 for the item: from the store where present, otherwise from one shared teacher call. */
  async rationales(request: RationaleRequest): Promise<RationaleResult> {
    void request;
    throw new Error("TeacherService.rationales: not implemented yet");
  }
}
