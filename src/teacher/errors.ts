import type { ParseFailureReason } from "./parse.ts";

/** Teacher failures, typed so the HTTP layer can map them (503: try later, 502: bad upstream answer, 504: timeout). */

export type TeacherFailureKind =
  | "rate_limited" // 429 after retries exhausted
  | "timeout" // no answer within the request timeout, after retries
  | "connection" // could not reach the endpoint, after retries
  | "upstream" // 5xx after retries, or a 4xx the teacher API answered (bad key, unknown model …)
  | "bad_response" // malformed JSON / no choices, after retries
  | "truncated" // finish_reason "length": the rationale was cut off
  | "content_filter" // finish_reason "content_filter"
  | "context_length" // the prompt is longer than the teacher's context window (never retried: shorten the template)
  | ParseFailureReason; // the teacher answered, but not with a usable rationale and label (src/teacher/parse.ts)

/** What a failed answer cost: the teacher answered (and billed) even though the answer is no rationale. */
export interface PaidUsage {
  promptTokens: number;
  completionTokens: number;
  reasoningTokens: number;
  costUsd: number;
}

export function addPaid(a: PaidUsage | undefined, b: PaidUsage | undefined): PaidUsage | undefined {
  if (!a || !b) return a ?? b;
  return {
    promptTokens: a.promptTokens + b.promptTokens,
    completionTokens: a.completionTokens + b.completionTokens,
    reasoningTokens: a.reasoningTokens + b.reasoningTokens,
    costUsd: a.costUsd + b.costUsd,
  };
}

export class TeacherError extends Error {
  /** Set when the failure came from an answer the API billed (truncated, filtered, refused by the parser). */
  paid?: PaidUsage;

  constructor(
    message: string,
    readonly kind: TeacherFailureKind,
    /** What an HTTP layer should answer. */
    readonly status: 422 | 502 | 503 | 504,
    readonly attempts: number,
    /** The teacher API's own HTTP status, when it answered one. */
    readonly upstreamStatus?: number,
  ) {
    super(message);
    this.name = "TeacherError";
  }

  /** The same failure carrying `paid` (the caller's own spend), or nothing (a caller that only waited for it). */
  withPaid(paid?: PaidUsage): TeacherError {
    const copy = new TeacherError(this.message, this.kind, this.status, this.attempts, this.upstreamStatus);
    copy.paid = paid;
    return copy;
  }
}

export function isTeacherError(err: unknown): err is TeacherError {
  return err instanceof TeacherError;
}
